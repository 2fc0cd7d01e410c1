// The device forward pass's composition, run on the CPU: the TinyStories-656K fixture (GQA, tied
// embeddings) pushed through the kernels' row functions in the order and memory layout that
// kernels/serve_device_model.cu uses (embed, RMSNorm by partial sums, projections, the compressed bank's
// tiled shrink / expand (tests/support/bank_tiles_emulation.hpp), RoPE per (token, pair), paged KV pools
// written through paged_kv_offset with a scattered block table, online-softmax attention per query head,
// SwiGLU, final norm on the output rows, lm_head), compared with the CPU transformer's logits — with and
// without a bank adapter. It checks that the pieces fit together and that the tolerance the GPU test uses
// (tests/kernels/test_serve_device_forward.cpp) holds for the kernels' summation orders.
#include "engine/bank/compressed_bank.hpp"
#include "engine/core/random.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/sampler.hpp"
#include "kernels/adapter_rows.hpp"
#include "kernels/paged_attention.hpp"
#include "kernels/rmsnorm_row.hpp"
#include "kernels/rope_rotate.hpp"
#include "kernels/swiglu.hpp"
#include "kernels/weight_dtype.hpp"
#include "tests/support/bank_tiles_emulation.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace k = lorafleet::kernels;

namespace {

std::shared_ptr<const model_weights> fixture_model() {
    static const auto w = model_weights::load(test::fixtures_dir() / "models/tinystories-656k");
    return w;
}

// The kernels-side view of a stored tensor (what device_source hands the upload).
int kernel_dtype(const weight_tensor& w) {
    return w.dtype == weight_dtype::f32   ? k::weight_f32
           : w.dtype == weight_dtype::f16 ? k::weight_f16
                                          : k::weight_bf16;
}

// Row r of a stored tensor widened as the upload widens it (kernels/weight_dtype.hpp).
std::vector<float> device_row(const weight_tensor& w, std::int64_t r) {
    std::vector<float> row(std::size_t(w.cols));
    k::weight_to_f32(w.data, kernel_dtype(w), std::size_t(r) * std::size_t(w.cols), row.size(), row.data());
    return row;
}

// y [n, d_out] = x [n, d_in] · Wᵀ, one in-order dot product per element (a different order from gemm_nt).
void linear(const weight_tensor& w, const float* x, float* y, int n) {
    const int d_out = int(w.rows), d_in = int(w.cols);
    for (int o = 0; o < d_out; ++o) {
        const std::vector<float> row = device_row(w, o);
        for (int t = 0; t < n; ++t)
            y[std::size_t(t) * d_out + o] = k::dot_in_order(row.data(), x + std::size_t(t) * d_in, d_in);
    }
}

// The row-function forward of one step of one sequence (positions first..first+n-1), logits of every row.
struct row_forward {
    const model_weights& w;
    const bank::compressed_bank* bank = nullptr;
    int block_size = 16;
    std::vector<int> table;          // the sequence's blocks in the pools
    std::vector<float> keys, values; // [layers][blocks, kv_heads, block_size, head_dim]
    int blocks = 0;

    row_forward(const model_weights& weights, int pool_blocks, std::vector<int> block_table)
        : w(weights), table(std::move(block_table)), blocks(pool_blocks) {
        const auto& g = w.geometry();
        const std::size_t n = std::size_t(g.num_layers) * blocks * g.num_kv_heads * block_size * g.head_dim;
        keys.assign(n, 0.0f);
        values.assign(n, 0.0f);
    }

    int module_index(int layer, const char* name) const {
        for (std::size_t m = 0; m < bank->modules.size(); ++m)
            if (bank->modules[m].layer == layer && bank->modules[m].short_name == name) return int(m);
        return -1;
    }

    void project(int l, int kind, const char* name, const float* x, float* y, int n,
                 const std::vector<int>& slot) {
        linear(w.layers[std::size_t(l)].linear[std::size_t(kind)].weight, x, y, n);
        if (!bank) return;
        const int m = module_index(l, name);
        if (m >= 0) test::emulate_bank_module(*bank, std::size_t(m), slot, x, y, n);
    }

    std::vector<float> step(const std::vector<int>& tokens, int first, int slot_id) {
        const auto& g = w.geometry();
        const int n = int(tokens.size()), d = g.hidden_size, hd = g.head_dim, half = hd / 2;
        const int qd = g.num_heads * hd, kvd = g.num_kv_heads * hd, ffn = g.intermediate_size;
        const int group = g.num_heads / g.num_kv_heads;
        const float eps = float(g.rms_norm_eps);
        const std::vector<int> slot(static_cast<std::size_t>(n), slot_id);
        std::vector<float> x(std::size_t(n) * d), xn(x.size()), tmp(x.size()), q(std::size_t(n) * qd),
            att(q.size()), kk(std::size_t(n) * kvd), vv(kk.size()), gate(std::size_t(n) * ffn),
            up(gate.size());
        for (int t = 0; t < n; ++t)
            std::copy_n(device_row(w.embed, tokens[std::size_t(t)]).data(), d, x.data() + std::size_t(t) * d);
        const k::paged_kv_layout L{g.num_kv_heads, block_size, hd};
        const std::size_t layer_floats = std::size_t(blocks) * g.num_kv_heads * block_size * hd;
        auto norm_rows = [&](const float* weight) {
            for (int t = 0; t < n; ++t) {
                double ss = 0;
                for (int lane = 0; lane < 256; ++lane) // the kernel's 256 strided partial sums
                    ss += k::rms_norm_partial(x.data() + std::size_t(t) * d, d, lane, 256);
                const float inv = k::rms_norm_inv(ss, d, eps);
                for (int i = 0; i < d; ++i)
                    xn[std::size_t(t) * d + i] =
                        k::rms_norm_element(x[std::size_t(t) * d + i], weight[i], inv);
            }
        };
        for (int l = 0; l < g.num_layers; ++l) {
            const layer_weights& LW = w.layers[std::size_t(l)];
            norm_rows(LW.input_norm.f32());
            project(l, 0, "q_proj", xn.data(), q.data(), n, slot);
            project(l, 1, "k_proj", xn.data(), kk.data(), n, slot);
            project(l, 2, "v_proj", xn.data(), vv.data(), n, slot);
            for (int t = 0; t < n; ++t)
                for (int p = 0; p < half; ++p) {
                    float c, s;
                    k::rope_angle(first + t, k::rope_inv_freq(g.rope_theta, p, hd), &c, &s);
                    for (int h = 0; h < g.num_heads; ++h)
                        k::rope_rotate_pair(q.data() + (std::size_t(t) * g.num_heads + h) * hd, half, p, c,
                                            s);
                    for (int h = 0; h < g.num_kv_heads; ++h)
                        k::rope_rotate_pair(kk.data() + (std::size_t(t) * g.num_kv_heads + h) * hd, half, p,
                                            c, s);
                }
            float* K = keys.data() + std::size_t(l) * layer_floats;
            float* V = values.data() + std::size_t(l) * layer_floats;
            for (int t = 0; t < n; ++t) {
                const int pos = first + t;
                for (int h = 0; h < g.num_kv_heads; ++h) {
                    const std::size_t off =
                        k::paged_kv_offset(L, table[std::size_t(pos / block_size)], h, pos % block_size);
                    std::copy_n(kk.data() + std::size_t(t) * kvd + std::size_t(h) * hd, hd, K + off);
                    std::copy_n(vv.data() + std::size_t(t) * kvd + std::size_t(h) * hd, hd, V + off);
                }
            }
            const float scale = 1.0f / std::sqrt(float(hd));
            for (int t = 0; t < n; ++t)
                for (int h = 0; h < g.num_heads; ++h)
                    k::paged_decode_attention_head(q.data() + (std::size_t(t) * g.num_heads + h) * hd, K, V,
                                                   table.data(), first + t + 1, h / group, L, scale,
                                                   att.data() + (std::size_t(t) * g.num_heads + h) * hd);
            project(l, 3, "o_proj", att.data(), tmp.data(), n, slot);
            for (std::size_t i = 0; i < x.size(); ++i)
                x[i] += tmp[i];
            norm_rows(LW.post_attention_norm.f32());
            project(l, 4, "gate_proj", xn.data(), gate.data(), n, slot);
            project(l, 5, "up_proj", xn.data(), up.data(), n, slot);
            k::swiglu_row(gate.data(), up.data(), gate.data(), n * ffn);
            project(l, 6, "down_proj", gate.data(), tmp.data(), n, slot);
            for (std::size_t i = 0; i < x.size(); ++i)
                x[i] += tmp[i];
        }
        norm_rows(w.final_norm.f32());
        std::vector<float> logits(std::size_t(n) * g.vocab_size);
        linear(w.lm_head, xn.data(), logits.data(), n);
        return logits;
    }
};

void compare_logits(std::span<const float> got, std::span<const float> want, const QString& what) {
    float scale = 1.0f, worst = 0.0f;
    for (std::size_t i = 0; i < want.size(); ++i) {
        scale = std::max(scale, std::abs(want[i]));
        worst = std::max(worst, std::abs(got[i] - want[i]));
    }
    QVERIFY2(worst <= 2e-4f * scale,
             qPrintable(what + QString(": max diff %1 at scale %2").arg(worst).arg(scale)));
    // The same choice, unless the reference's top two are closer than the tolerance (a near tie).
    const int a = greedy_token(got), b = greedy_token(want);
    QVERIFY2(a == b || want[std::size_t(b)] - want[std::size_t(a)] <= 2e-4f * scale,
             qPrintable(what + QString(": argmax %1 vs %2").arg(a).arg(b)));
}

bank::compressed_bank q_v_bank(const io::model_geometry& g) {
    return test::make_model_bank(g, {.modules = {"q_proj", "v_proj", "down_proj"}, .seed = 5});
}

} // namespace

class TestServeForwardRows : public QObject {
    Q_OBJECT
private slots:
    void init() { LORAFLEET_REQUIRE_FIXTURES(); }

    void rowFunctionsComposeToTheCpuForward_data() {
        QTest::addColumn<bool>("with_bank");
        QTest::newRow("base") << false;
        QTest::newRow("bank adapter") << true;
    }
    void rowFunctionsComposeToTheCpuForward() {
        QFETCH(bool, with_bank);
        const auto w = fixture_model();
        const auto& g = w->geometry();
        const auto bank = q_v_bank(g);
        std::unique_ptr<BankDelta> delta;
        if (with_bank) delta = std::make_unique<BankDelta>(bank, g, "bank");
        const int slot = with_bank ? 1 : -1;
        transformer cpu(w, 1);
        kv_cache cache = cpu.make_cache(8u << 20);
        cache.add_sequence(0);
        random_stream rng(9);
        std::vector<int> tokens(40);
        for (auto& t : tokens)
            t = int(rng.next_u64() % std::uint64_t(g.vocab_size));
        tokens[0] = 1;
        row_forward rows(*w, 7, {5, 2, 6}); // a scattered block table in a 7-block pool
        if (with_bank) rows.bank = &bank;
        // Prefill 23 tokens with every row's logits, then decode the rest one at a time.
        const std::vector<int> head(tokens.begin(), tokens.begin() + 23);
        const sequence_step pre{0, head, {}, slot, true};
        const auto want = cpu.forward(cache, std::span(&pre, 1), delta.get());
        const auto got = rows.step(head, 0, slot);
        for (int r = 0; r < 23; ++r)
            compare_logits(
                std::span<const float>(got.data() + std::size_t(r) * g.vocab_size, std::size_t(g.vocab_size)),
                want.row(r), QString("prefill row %1").arg(r));
        for (int t = 23; t < 40; ++t) {
            const std::vector<int> one = {tokens[std::size_t(t)]};
            const sequence_step d{0, one, {}, slot, false};
            compare_logits(rows.step(one, t, slot), cpu.forward(cache, std::span(&d, 1), delta.get()).last(0),
                           QString("decode position %1").arg(t));
        }
    }
};

QTEST_GUILESS_MAIN(TestServeForwardRows)
#include "test_serve_forward_rows.moc"
