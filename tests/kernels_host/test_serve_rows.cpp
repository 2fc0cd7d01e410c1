// kernels/ row functions of the forward pass (RMSNorm, RoPE, SwiGLU, paged decode attention), run on the
// CPU against plain references written here from the CPU transformer's formulas (engine/serve/
// transformer.cpp), on odd sizes. The attention test lays its keys and values out through the engine's
// own kv_cache with scattered blocks, so the kernels' paged layout is checked against the real one.
#include "engine/core/random.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "kernels/paged_attention.hpp"
#include "kernels/rmsnorm_row.hpp"
#include "kernels/rope_rotate.hpp"
#include "kernels/swiglu.hpp"

#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace lorafleet;
namespace k = lorafleet::kernels;

namespace {

std::vector<float> random_vector(std::size_t n, std::uint64_t seed, double sd = 1.0) {
    random_stream rng(seed);
    std::vector<float> v(n);
    for (auto& x : v)
        x = float(rng.normal() * sd);
    return v;
}

const int odd_sizes[] = {1, 2, 19, 64, 111, 989};

} // namespace

class TestServeRows : public QObject {
    Q_OBJECT
private slots:
    void rmsNormMatchesTheTransformerFormula() {
        for (int d : odd_sizes) {
            const auto x = random_vector(std::size_t(d), 1 + d, 3.0);
            const auto w = random_vector(std::size_t(d), 2 + d);
            const float eps = 1e-5f;
            std::vector<float> out(static_cast<std::size_t>(d));
            k::rms_norm_row(x.data(), w.data(), out.data(), d, eps);
            double ss = 0;
            for (float v : x)
                ss += double(v) * v;
            const float inv = float(1.0 / std::sqrt(ss / d + double(eps)));
            for (int i = 0; i < d; ++i)
                QCOMPARE(out[std::size_t(i)], w[std::size_t(i)] * (x[std::size_t(i)] * inv)); // same bits
            // The strided partial sums a kernel adds up give the same double sum up to rounding.
            double parts = 0;
            for (int lane = 0; lane < 7; ++lane)
                parts += k::rms_norm_partial(x.data(), d, lane, 7);
            QVERIFY(std::abs(parts - ss) <= 1e-12 * ss);
            // In place works too.
            auto y = x;
            k::rms_norm_row(y.data(), w.data(), y.data(), d, eps);
            QCOMPARE(y, out);
        }
    }

    void rmsNormOfAConstantRowIsTheWeight() {
        const int d = 111;
        std::vector<float> x(d, -2.5f), w(d), out(d);
        for (int i = 0; i < d; ++i)
            w[std::size_t(i)] = float(i) * 0.1f;
        k::rms_norm_row(x.data(), w.data(), out.data(), d, 0.0f);
        for (int i = 0; i < d; ++i)
            QVERIFY(std::abs(out[std::size_t(i)] + w[std::size_t(i)]) <=
                    1e-6f * (1 + std::abs(w[std::size_t(i)])));
    }

    void ropeMatchesTheRotateHalfReference() {
        for (int head_dim : {2, 8, 64, 128}) {
            const int half = head_dim / 2;
            for (double theta : {10000.0, 1000000.0}) {
                for (int pos : {0, 1, 17, 511, 4095}) {
                    std::vector<float> c(static_cast<std::size_t>(half)), s(static_cast<std::size_t>(half));
                    for (int i = 0; i < half; ++i) {
                        const float inv = k::rope_inv_freq(theta, i, head_dim);
                        QCOMPARE(inv, float(std::pow(theta, -2.0 * i / head_dim)));
                        k::rope_angle(pos, inv, &c[std::size_t(i)], &s[std::size_t(i)]);
                        const double angle = double(pos) * double(inv);
                        QCOMPARE(c[std::size_t(i)], float(std::cos(angle)));
                        QCOMPARE(s[std::size_t(i)], float(std::sin(angle)));
                    }
                    auto v = random_vector(std::size_t(head_dim), 7 + pos);
                    const auto before = v;
                    k::rope_rotate_head(v.data(), head_dim, c.data(), s.data());
                    for (int i = 0; i < half; ++i) {
                        const float a = before[std::size_t(i)], b = before[std::size_t(i + half)];
                        QCOMPARE(v[std::size_t(i)], a * c[std::size_t(i)] - b * s[std::size_t(i)]);
                        QCOMPARE(v[std::size_t(i + half)], b * c[std::size_t(i)] + a * s[std::size_t(i)]);
                        // A rotation: each (i, i + half) pair keeps its length.
                        const double r0 = std::hypot(a, b);
                        const double r1 = std::hypot(v[std::size_t(i)], v[std::size_t(i + half)]);
                        QVERIFY(std::abs(r0 - r1) <= 1e-5 * (1 + r0));
                    }
                    if (pos == 0) QCOMPARE(v, before); // angle 0: cos 1, sin 0 exactly
                }
            }
        }
    }

    void swigluIsSiluOfGateTimesUp() {
        for (int n : odd_sizes) {
            const auto gate = random_vector(std::size_t(n), 11 + n, 4.0);
            const auto up = random_vector(std::size_t(n), 12 + n);
            std::vector<float> out(static_cast<std::size_t>(n));
            k::swiglu_row(gate.data(), up.data(), out.data(), n);
            for (int i = 0; i < n; ++i) {
                const float g = gate[std::size_t(i)];
                QCOMPARE(out[std::size_t(i)], g / (1.0f + std::exp(-g)) * up[std::size_t(i)]);
            }
        }
        QCOMPARE(k::silu(0.0f), 0.0f);
        QVERIFY(std::abs(k::silu(30.0f) - 30.0f) < 1e-5f);
        QVERIFY(std::abs(k::silu(-30.0f)) < 1e-10f);
    }

    // One query head against a two-pass softmax over the same cache, for every head of a GQA geometry,
    // several contexts that end inside and at the edge of a block, and sequences whose blocks interleave.
    void pagedAttentionMatchesTwoPassSoftmax() {
        io::model_geometry g;
        g.num_layers = 2;
        g.num_heads = 6;
        g.num_kv_heads = 2;
        g.head_dim = 19; // odd on purpose: the kernel's layout does not care
        g.hidden_size = g.num_heads * g.head_dim;
        const int bs = 16, group = g.num_heads / g.num_kv_heads;
        serve::kv_cache cache(g, serve::kv_cache::block_bytes(g, bs) * 40, bs);
        // Three sequences reserved a block at a time in turn, so each one's blocks are scattered.
        const int lengths[] = {1, 111, 48};
        for (int s = 0; s < 3; ++s)
            cache.add_sequence(s);
        for (int step = 1; step <= 8; ++step)
            for (int s = 0; s < 3; ++s)
                cache.reserve(s, std::min(lengths[s], step * bs));
        random_stream rng(5);
        for (int l = 0; l < g.num_layers; ++l)
            for (int b = 0; b < cache.total_blocks(); ++b) {
                float* kb = cache.keys(l, b);
                float* vb = cache.values(l, b);
                const std::size_t n = std::size_t(g.num_kv_heads) * bs * g.head_dim;
                for (std::size_t i = 0; i < n; ++i) {
                    kb[i] = float(rng.normal());
                    vb[i] = float(rng.normal());
                }
            }
        const k::paged_kv_layout layout{g.num_kv_heads, bs, g.head_dim};
        const int hd = g.head_dim;
        const float scale = 1.0f / std::sqrt(float(hd));
        for (int s = 0; s < 3; ++s) {
            const auto table = cache.block_table(s);
            if (s == 1) QVERIFY(table[1] != table[0] + 1); // really scattered
            for (int l = 0; l < g.num_layers; ++l)
                for (int ctx : {1, 15, 16, 17, lengths[s]}) {
                    if (ctx > lengths[s]) continue;
                    for (int h = 0; h < g.num_heads; ++h) {
                        const int kv = h / group;
                        const auto q = random_vector(std::size_t(hd), 100 + h + ctx);
                        std::vector<float> out(static_cast<std::size_t>(hd));
                        k::paged_decode_attention_head(q.data(), cache.keys(l, 0), cache.values(l, 0),
                                                       table.data(), ctx, kv, layout, scale, out.data());
                        // Reference: scores through kv_cache's own accessors, max-subtracted softmax.
                        std::vector<double> p(static_cast<std::size_t>(ctx));
                        for (int j = 0; j < ctx; ++j) {
                            const float* kp = cache.keys(l, table[std::size_t(j / bs)]) +
                                              (std::size_t(kv) * bs + std::size_t(j % bs)) * hd;
                            double dot = 0;
                            for (int i = 0; i < hd; ++i)
                                dot += double(q[std::size_t(i)]) * kp[i];
                            p[std::size_t(j)] = dot * scale;
                        }
                        const double mx = *std::max_element(p.begin(), p.end());
                        double sum = 0;
                        for (auto& x : p)
                            sum += (x = std::exp(x - mx));
                        for (int i = 0; i < hd; ++i) {
                            double ref = 0;
                            for (int j = 0; j < ctx; ++j)
                                ref +=
                                    p[std::size_t(j)] / sum *
                                    cache.values(l, table[std::size_t(j / bs)])
                                        [(std::size_t(kv) * bs + std::size_t(j % bs)) * hd + std::size_t(i)];
                            QVERIFY2(std::abs(out[std::size_t(i)] - ref) <= 2e-5 * (1 + std::abs(ref)),
                                     qPrintable(QString("seq %1 layer %2 ctx %3 head %4 dim %5: %6 vs %7")
                                                    .arg(s)
                                                    .arg(l)
                                                    .arg(ctx)
                                                    .arg(h)
                                                    .arg(i)
                                                    .arg(out[std::size_t(i)])
                                                    .arg(ref)));
                        }
                    }
                }
        }
    }

    // What the GPU kernel's warp does (serve_kernels.cu, decode_attention_kernel): 32 lanes split the
    // head's dims, per position a butterfly sum of their shares of q · k (as __shfl_xor_sync does it),
    // then each lane folds the score into its own state and dims. Must equal the one-thread result, for
    // head dims below, at and above one warp's width and at the 256 maximum.
    void warpSplitAttentionMatchesTheWholeHead() {
        for (const int hd : {7, 32, 64, 100, 128, 256}) {
            const k::paged_kv_layout layout{3, 16, hd};
            const int blocks = 9, context = 131;
            const auto keys = random_vector(std::size_t(blocks) * 3 * 16 * std::size_t(hd), 61, 2.0);
            const auto values = random_vector(keys.size(), 62);
            const int table[] = {4, 0, 8, 2, 6, 1, 7, 3, 5};
            const auto q = random_vector(std::size_t(hd), 63);
            const float scale = 1.0f / std::sqrt(float(hd));
            for (int kv = 0; kv < 3; ++kv) {
                const int L = k::attention_lanes;
                std::vector<k::online_softmax_state> st(std::size_t(L), {-INFINITY, 0.0f});
                std::vector<float> acc(std::size_t(L) * k::attention_lane_dims, 0.0f);
                for (int j = 0; j < context; ++j) {
                    const std::size_t off = k::paged_kv_offset(layout, table[j / 16], kv, j % 16);
                    std::vector<float> part(static_cast<std::size_t>(L));
                    for (int lane = 0; lane < L; ++lane)
                        part[std::size_t(lane)] =
                            k::attention_lane_dot(q.data(), keys.data() + off, hd, lane);
                    for (int step = L / 2; step > 0; step /= 2) { // xor butterfly, all lanes at once
                        const auto before = part;
                        for (int lane = 0; lane < L; ++lane)
                            part[std::size_t(lane)] =
                                before[std::size_t(lane)] + before[std::size_t(lane ^ step)];
                    }
                    for (int lane = 0; lane < L; ++lane) {
                        QCOMPARE(part[std::size_t(lane)], part[0]); // every lane folds the same score
                        k::attention_lane_push(st[std::size_t(lane)],
                                               acc.data() + std::size_t(lane) * k::attention_lane_dims, hd,
                                               lane, part[std::size_t(lane)] * scale, values.data() + off);
                    }
                }
                std::vector<float> got(std::size_t(hd), std::nanf(""));
                for (int lane = 0; lane < L; ++lane)
                    k::attention_lane_store(st[std::size_t(lane)],
                                            acc.data() + std::size_t(lane) * k::attention_lane_dims, hd, lane,
                                            got.data());
                std::vector<float> whole(static_cast<std::size_t>(hd));
                k::paged_decode_attention_head(q.data(), keys.data(), values.data(), table, context, kv,
                                               layout, scale, whole.data());
                for (int i = 0; i < hd; ++i)
                    QVERIFY2(std::abs(got[std::size_t(i)] - whole[std::size_t(i)]) <=
                                 1e-5f * (1 + std::abs(whole[std::size_t(i)])),
                             qPrintable(QString("hd %1 kv %2 dim %3: %4 vs %5")
                                            .arg(hd)
                                            .arg(kv)
                                            .arg(i)
                                            .arg(got[std::size_t(i)])
                                            .arg(whole[std::size_t(i)])));
            }
        }
    }

    void attentionOverOneTokenReturnsItsValue() {
        const k::paged_kv_layout layout{1, 16, 5};
        std::vector<float> keys(16 * 5 * 3, 0.0f), values(16 * 5 * 3, 0.0f);
        const int table[] = {2};
        for (int i = 0; i < 5; ++i)
            values[k::paged_kv_offset(layout, 2, 0, 0) + std::size_t(i)] = float(i) + 0.5f;
        const float q[] = {1, 2, 3, 4, 5};
        float out[5];
        k::paged_decode_attention_head(q, keys.data(), values.data(), table, 1, 0, layout, 0.3f, out);
        for (int i = 0; i < 5; ++i)
            QCOMPARE(out[i], float(i) + 0.5f);
    }
};

QTEST_GUILESS_MAIN(TestServeRows)
#include "test_serve_rows.moc"
