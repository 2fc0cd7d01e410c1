// The device's storage precisions on the CPU (kernels/half_elements.hpp), and the kernels' row functions
// that read 16-bit storage (paged attention over a bf16 / fp16 KV cache, the bank's tiles over 16-bit
// bases, raw LoRA over 16-bit factors), against double-precision references:
//  - conversions: every one of the 65536 fp16 patterns decodes to the value its fields define; stores
//    round to the NEAREST representable value (ties to even), checked against a reference that rounds in
//    double with nearbyint on the format's grid; NaN / inf / overflow / subnormals; bf16 likewise.
//  - exact tests (bf16_exact / fp16_exact, the compression cache's lossless-storage check): equal to "a
//    store then a load gives the same bits, and the value is finite" on every bf16 / fp16 value and its
//    float neighbours, on a sweep over all float bit patterns (NaNs included) and on the probe values.
//  - rows: the error bounds are derived from the unit roundoffs (u = 2^-24 for float arithmetic, u_s for
//    the storage), not fitted to the results; each derivation is next to its check.
#include "kernels/adapter_rows.hpp"
#include "kernels/bank_tiles.hpp"
#include "kernels/half_elements.hpp"
#include "kernels/paged_attention.hpp"

#include "engine/core/random.hpp"

#include <QtTest/QtTest>

#include <cfenv>
#include <cmath>
#include <limits>
#include <vector>

using namespace lorafleet;
namespace k = lorafleet::kernels;

namespace {

constexpr double u32 = 0x1p-24; // float's unit roundoff

// The nearest value of a binary format with `p` significand bits, smallest normal exponent emin and largest
// finite `max_finite`, computed in double (x is a float, so exact in double): ties to even by nearbyint.
double round_to_format(double x, int p, int emin, double max_finite) {
    if (std::isnan(x) || std::isinf(x)) return x;
    if (x == 0) return x;
    int e = std::ilogb(x);
    if (e < emin) e = emin; // subnormal range: the grid of the smallest normal binade
    const double quantum = std::ldexp(1.0, e - (p - 1));
    const double q = std::nearbyint(x / quantum) * quantum; // default mode: to nearest, ties to even
    // Overflow: the format rounds to infinity from (max + half an ulp of max) on.
    const double half_ulp_max = std::ldexp(1.0, std::ilogb(max_finite) - p);
    if (std::abs(x) >= max_finite + half_ulp_max) return std::copysign(INFINITY, x);
    return q;
}

double ref_bf16(float x) {
    return round_to_format(x, 8, -126, 0x1.fep127);
}
double ref_fp16(float x) {
    return round_to_format(x, 11, -14, 65504.0);
}

// Floats covering every regime: random bit patterns, values near the fp16 limits, exact ties.
std::vector<float> probe_floats() {
    std::vector<float> v;
    random_stream rng(17);
    for (int i = 0; i < 200000; ++i) {
        const auto bits = std::uint32_t(rng.next_u64());
        float f;
        std::memcpy(&f, &bits, 4);
        if (!std::isnan(f)) v.push_back(f);
    }
    for (int i = 0; i < 100000; ++i) {
        v.push_back(float(rng.normal() * std::ldexp(1.0, int(rng.next_u64() % 60) - 30)));
    }
    for (float f : {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, 65536.0f, 0x1p-14f, 0x1p-24f, 0x1p-25f,
                    0x1.8p-25f, 0x1.000002p-25f, 0x1.002p0f, 0x1.006p0f, 0x1.0008p0f, 0x1.0018p0f, 1e-30f,
                    std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min()})
        for (float s : {1.0f, -1.0f})
            v.push_back(s * f);
    return v;
}

// Attention of one head in double over the keys / values given (already dequantized or not).
std::vector<double> attention_ref(const std::vector<float>& q, const std::vector<double>& keys,
                                  const std::vector<double>& values, int context, int hd, double scale) {
    std::vector<double> s(static_cast<std::size_t>(context)), out(std::size_t(hd), 0.0);
    double mx = -INFINITY, l = 0;
    for (int j = 0; j < context; ++j) {
        double d = 0;
        for (int i = 0; i < hd; ++i)
            d += double(q[std::size_t(i)]) * keys[std::size_t(j * hd + i)];
        s[std::size_t(j)] = d * scale;
        mx = std::max(mx, s[std::size_t(j)]);
    }
    for (int j = 0; j < context; ++j) {
        const double p = std::exp(s[std::size_t(j)] - mx);
        l += p;
        for (int i = 0; i < hd; ++i)
            out[std::size_t(i)] += p * values[std::size_t(j * hd + i)];
    }
    for (auto& o : out)
        o /= l;
    return out;
}

template <class E> void check_attention(double us) {
    random_stream rng(5);
    const int hd = 67, context = 45; // odd sizes; one KV head, block size 8, scattered blocks
    const k::paged_kv_layout L{1, 8, hd};
    const std::vector<int> table = {4, 0, 6, 2, 5, 1};
    std::vector<E> keys(static_cast<std::size_t>(8 * 8 * hd)), values(keys.size());
    std::vector<double> kd(static_cast<std::size_t>(context * hd)), vd(kd.size()), kq(kd.size()),
        vq(kd.size());
    std::vector<float> q(static_cast<std::size_t>(hd));
    for (auto& x : q)
        x = float(rng.normal());
    for (int j = 0; j < context; ++j)
        for (int i = 0; i < hd; ++i) {
            const float kv = float(rng.normal() * 0.3), vv = float(rng.normal() * 2.0);
            const std::size_t off =
                k::paged_kv_offset(L, table[std::size_t(j / 8)], 0, j % 8) + std::size_t(i);
            k::kv_store(keys.data(), off, kv);
            k::kv_store(values.data(), off, vv);
            kd[std::size_t(j * hd + i)] = kv;
            vd[std::size_t(j * hd + i)] = vv;
            kq[std::size_t(j * hd + i)] = k::to_float(keys[off]);
            vq[std::size_t(j * hd + i)] = k::to_float(values[off]);
            // The store is within the storage's unit roundoff.
            QVERIFY(std::abs(kq[std::size_t(j * hd + i)] - kv) <= us * std::abs(kv));
        }
    const double scale = 1.0 / std::sqrt(double(hd));
    std::vector<float> out(static_cast<std::size_t>(hd));
    k::paged_decode_attention_head(q.data(), keys.data(), values.data(), table.data(), context, 0, L,
                                   float(scale), out.data());
    double qk = 0, vmax = 0; // max_j sum_i |q_i k_ji|, max |v|
    for (int j = 0; j < context; ++j) {
        double a = 0;
        for (int i = 0; i < hd; ++i)
            a += std::abs(double(q[std::size_t(i)]) * kd[std::size_t(j * hd + i)]);
        qk = std::max(qk, a);
    }
    for (double v : vd)
        vmax = std::max(vmax, std::abs(v));
    // (a) Against the stored (dequantized) cache: only float arithmetic errs. A score's dot product of hd
    // terms errs by <= gamma_hd sum|q k| (gamma_n = n u / (1 - n u)), times scale, plus the rounding of
    // the product with scale: delta <= (gamma_hd + 2u) scale qk. Perturbed scores move each softmax weight
    // p_j by a factor within e^{+-2 delta}, so sum_j |p'_j - p_j| |v_j| <= (e^{2 delta} - 1) vmax; expf,
    // the online rescaling (one multiply per later larger score), the sums of `context` terms and the
    // final division add at most (2 context + 8) u relative to vmax.
    const double gamma_hd = hd * u32 / (1 - hd * u32);
    const double delta_a = (gamma_hd + 2 * u32) * scale * qk;
    const double bound_a = vmax * (std::expm1(2 * delta_a) + (2 * context + 8) * u32);
    const auto ref_a = attention_ref(q, kq, vq, context, hd, scale);
    for (int i = 0; i < hd; ++i)
        QVERIFY2(std::abs(out[std::size_t(i)] - ref_a[std::size_t(i)]) <= bound_a,
                 qPrintable(QString("dim %1: %2 vs %3 (bound %4)")
                                .arg(i)
                                .arg(out[std::size_t(i)])
                                .arg(ref_a[std::size_t(i)])
                                .arg(bound_a)));
    // (b) Against the unrounded keys and values: storing each key element errs by <= us |k|, which adds
    // us scale qk to delta; storing each value by <= us |v|, which adds us vmax (weights sum to 1).
    const double delta_b = delta_a + us * scale * qk;
    const double bound_b = vmax * (std::expm1(2 * delta_b) + us + (2 * context + 8) * u32);
    const auto ref_b = attention_ref(q, kd, vd, context, hd, scale);
    double worst = 0;
    for (int i = 0; i < hd; ++i) {
        worst = std::max(worst, std::abs(out[std::size_t(i)] - ref_b[std::size_t(i)]));
        QVERIFY2(std::abs(out[std::size_t(i)] - ref_b[std::size_t(i)]) <= bound_b,
                 qPrintable(QString("dim %1 vs unrounded (bound %2)").arg(i).arg(bound_b)));
    }
    QVERIFY(worst > 0); // the storage is really 16-bit: the result is not the unrounded one
}

} // namespace

class TestHalfElements : public QObject {
    Q_OBJECT
private slots:
    void fp16DecodesEveryPattern() {
        for (unsigned h = 0; h < 65536; ++h) {
            const unsigned e = (h >> 10) & 31, m = h & 1023;
            const double sign = (h & 0x8000) ? -1.0 : 1.0;
            const float got = k::to_float(k::fp16_bits{static_cast<unsigned short>(h)});
            if (e == 31) {
                QVERIFY(m ? std::isnan(got) : std::isinf(got) && std::signbit(got) == bool(h & 0x8000));
                continue;
            }
            const double want = e == 0 ? sign * std::ldexp(double(m), -24)
                                       : sign * std::ldexp(1.0 + double(m) / 1024.0, int(e) - 15);
            QCOMPARE(double(got), want);
            QCOMPARE(std::signbit(got), bool(h & 0x8000));
            // And back: every finite value is representable, so the store gives the same bits.
            QCOMPARE(unsigned(k::fp16_from_float(got).bits), h);
        }
    }

    void bf16DecodesAndRoundTrips() {
        for (unsigned h = 0; h < 65536; ++h) {
            const float got = k::to_float(k::bf16_bits{static_cast<unsigned short>(h)});
            std::uint32_t bits;
            std::memcpy(&bits, &got, 4);
            QCOMPARE(bits, std::uint32_t(h) << 16); // bf16 is float's upper half
            if (!std::isnan(got)) QCOMPARE(unsigned(k::bf16_from_float(got).bits), h);
        }
    }

    void storesRoundToNearestEven() {
        QCOMPARE(std::fegetround(), FE_TONEAREST);
        int checked = 0;
        for (const float x : probe_floats()) {
            const double b = ref_bf16(x), f = ref_fp16(x);
            const float gb = k::round_through<k::bf16_bits>(x), gf = k::round_through<k::fp16_bits>(x);
            QVERIFY2(
                double(gb) == b || (std::isinf(b) && std::isinf(gb) && (b > 0) == (gb > 0)),
                qPrintable(QString("bf16 of %1: %2, nearest %3").arg(double(x), 0, 'g', 10).arg(gb).arg(b)));
            QVERIFY2(
                double(gf) == f || (std::isinf(f) && std::isinf(gf) && (f > 0) == (gf > 0)),
                qPrintable(QString("fp16 of %1: %2, nearest %3").arg(double(x), 0, 'g', 10).arg(gf).arg(f)));
            // The unit roundoff bound holds wherever the result is a finite normal.
            if (std::isfinite(gb) && std::abs(x) >= 0x1p-126f)
                QVERIFY(std::abs(double(gb) - x) <= 0x1p-8 * std::abs(x));
            if (std::isfinite(gf) && std::abs(x) >= 0x1p-14f)
                QVERIFY(std::abs(double(gf) - x) <= 0x1p-11 * std::abs(x));
            ++checked;
        }
        QVERIFY(checked >
                290000); // the random bit patterns minus their NaNs, the normals and the corner values
        // Ties go to even, specials stay special.
        QCOMPARE(k::round_through<k::fp16_bits>(0x1.002p0f), 1.0f);       // tie, even below
        QCOMPARE(k::round_through<k::fp16_bits>(0x1.006p0f), 0x1.008p0f); // tie, even above
        QCOMPARE(k::round_through<k::fp16_bits>(0x1p-25f), 0.0f);         // tie at the bottom
        QCOMPARE(k::round_through<k::fp16_bits>(0x1.8p-25f), 0x1p-24f);   // above the tie
        QVERIFY(std::isinf(k::round_through<k::fp16_bits>(65520.0f)));    // rounds up to inf
        QCOMPARE(k::round_through<k::fp16_bits>(65519.99f), 65504.0f);    // just below: max
        QCOMPARE(k::round_through<k::bf16_bits>(0x1.01p0f), 1.0f);        // bf16 tie, even below
        QCOMPARE(k::round_through<k::bf16_bits>(0x1.03p0f), 0x1.04p0f);   // tie, even above
        QVERIFY(std::isinf(k::round_through<k::bf16_bits>(std::numeric_limits<float>::max())));
        QVERIFY(std::isnan(k::round_through<k::bf16_bits>(NAN)));
        QVERIFY(std::isnan(k::round_through<k::fp16_bits>(NAN)));
        QVERIFY(std::isinf(k::round_through<k::fp16_bits>(INFINITY)));
    }

    void exactTestsMatchTheRoundTrip() {
        const auto bits_of = [](float x) {
            std::uint32_t u;
            std::memcpy(&u, &x, 4);
            return u;
        };
        std::size_t checked = 0, exact_b = 0, exact_f = 0, wrong = 0;
        QString first_wrong;
        const auto check = [&](float x) {
            const bool want_b = std::isfinite(x) && bits_of(k::round_through<k::bf16_bits>(x)) == bits_of(x);
            const bool want_f = std::isfinite(x) && bits_of(k::round_through<k::fp16_bits>(x)) == bits_of(x);
            if ((k::bf16_exact(x) != want_b || k::fp16_exact(x) != want_f) && wrong++ == 0)
                first_wrong = QString("bits %1: bf16_exact %2 (round trip %3), fp16_exact %4 (round trip %5)")
                                  .arg(bits_of(x), 8, 16, QChar('0'))
                                  .arg(k::bf16_exact(x))
                                  .arg(want_b)
                                  .arg(k::fp16_exact(x))
                                  .arg(want_f);
            ++checked;
            exact_b += want_b;
            exact_f += want_f;
        };
        for (unsigned h = 0; h < 65536; ++h)
            for (const float x : {k::to_float(k::bf16_bits{static_cast<unsigned short>(h)}),
                                  k::to_float(k::fp16_bits{static_cast<unsigned short>(h)})}) {
                check(x);
                check(std::nextafter(x, INFINITY));
                check(std::nextafter(x, -INFINITY));
            }
        for (std::uint64_t u = 0; u < (std::uint64_t(1) << 32); u += 4093) { // NaNs and inf among them
            float x;
            const auto b = std::uint32_t(u);
            std::memcpy(&x, &b, 4);
            check(x);
        }
        for (const float x : probe_floats())
            check(x);
        QVERIFY2(wrong == 0, qPrintable(QString("%1 wrong, first: %2").arg(wrong).arg(first_wrong)));
        QVERIFY(checked > 1000000);
        // Every finite bf16 / fp16 value is exact in its own format (a third of the checks at least).
        QVERIFY(exact_b >= 65536 - 2 * 256);
        QVERIFY(exact_f >= 65536 - 2 * 1024);
    }

    void attentionOverBf16Cache() { check_attention<k::bf16_bits>(0x1p-8); }
    void attentionOverFp16Cache() { check_attention<k::fp16_bits>(0x1p-11); }

    // Raw LoRA over 16-bit factors: t = A x in float from the stored A. Against the dequantized A the
    // in-order float sum of d_in terms errs by <= gamma_{d_in} sum |a x|; against the unrounded A the
    // storage adds <= u_s sum |a x|.
    void bgmvOverHalfFactors() {
        random_stream rng(9);
        const int d_in = 301, rank = 7;
        std::vector<float> a(static_cast<std::size_t>(rank * d_in)), x(static_cast<std::size_t>(d_in));
        std::vector<k::bf16_bits> ah(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            a[i] = float(rng.normal());
            ah[i] = k::bf16_from_float(a[i]);
        }
        for (auto& v : x)
            v = float(rng.normal());
        std::vector<float> t(static_cast<std::size_t>(rank));
        k::bgmv_shrink_token(ah.data(), x.data(), t.data(), rank, d_in);
        const double gamma = d_in * u32 / (1 - d_in * u32);
        for (int p = 0; p < rank; ++p) {
            double dq = 0, d = 0, mag = 0;
            for (int i = 0; i < d_in; ++i) {
                const std::size_t at = std::size_t(p * d_in + i);
                dq += double(k::to_float(ah[at])) * x[std::size_t(i)];
                d += double(a[at]) * x[std::size_t(i)];
                mag += std::abs(double(a[at]) * x[std::size_t(i)]);
            }
            QVERIFY(std::abs(t[std::size_t(p)] - dq) <= gamma * mag * (1 + 0x1p-8));
            QVERIFY(std::abs(t[std::size_t(p)] - d) <= (gamma + 0x1p-8) * mag * (1 + 0x1p-8));
        }
    }

    // The bank's tile functions over 16-bit bases (one tile, every phase run for every thread): the
    // shrink's staged V_cᵀ equals the dequantized basis exactly, and the expanded column equals
    // U_c[o, :] · w in float with stored U_c — within gamma_r sum |u w| of the double product.
    void bankTilesOverHalfBases() {
        random_stream rng(21);
        const int r = 5, d_in = 70, d_out = 9, count = 3;
        std::vector<k::fp16_bits> vt(static_cast<std::size_t>(r * d_in)),
            u(static_cast<std::size_t>(d_out * r));
        for (auto& e : vt)
            e = k::fp16_from_float(float(rng.normal()));
        for (auto& e : u)
            e = k::fp16_from_float(float(rng.normal()));
        std::vector<float> x(static_cast<std::size_t>(count * d_in));
        for (auto& v : x)
            v = float(rng.normal());
        const int row[] = {2, 0, 1};
        const k::bank_tile tile{0, count, 0};
        std::vector<float> xs(static_cast<std::size_t>(k::bank_shrink_shared_floats(r)));
        float* vs = xs.data() + k::bank_tile_tokens * k::bank_shrink_stride;
        for (int tid = 0; tid < k::bank_block_threads; ++tid)
            k::bank_shrink_stage(vt.data(), row, x.data(), d_in, r, tile, 64, d_in - 64, xs.data(), vs, tid,
                                 k::bank_block_threads);
        for (int p = 0; p < r; ++p)
            for (int c = 0; c < d_in - 64; ++c)
                QCOMPARE(vs[p * k::bank_shrink_stride + c], k::to_float(vt[std::size_t(p * d_in + 64 + c)]));
        std::vector<float> ws(static_cast<std::size_t>(count * r)), y(std::size_t(3 * d_out), 0.0f);
        for (auto& w : ws)
            w = float(rng.normal());
        for (int o = 0; o < d_out + 3; ++o) // columns past d_out do nothing
            k::bank_expand_column(u.data(), row, ws.data(), d_out, r, tile, o, y.data());
        const double gamma = r * u32 / (1 - r * u32);
        for (int j = 0; j < count; ++j)
            for (int o = 0; o < d_out; ++o) {
                double want = 0, mag = 0;
                for (int q = 0; q < r; ++q) {
                    const double term =
                        double(k::to_float(u[std::size_t(o * r + q)])) * ws[std::size_t(j * r + q)];
                    want += term;
                    mag += std::abs(term);
                }
                QVERIFY(std::abs(y[std::size_t(row[j] * d_out + o)] - want) <= gamma * mag + 1e-30);
            }
    }
};

QTEST_GUILESS_MAIN(TestHalfElements)
#include "test_half_elements.moc"
