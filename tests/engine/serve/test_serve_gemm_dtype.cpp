// gemm_nt with 16-bit weights (engine/serve/model/gemm.hpp): w stored as bfloat16 or float16 must give
// exactly the float32 product over the same values, bit for bit (the rows are widened, then summed in the
// same order), for odd m, n, k (edge tiles, the k tail), with a leading dimension wider than k, on one
// thread and on a worker_pool, plain and with fused work. The float32 reference holds the 16-bit values
// widened by engine/core/float16.hpp (an independent scalar conversion), the 16-bit copy holds their bits.
// Also widen_to_f32 (the vectorized widening the products use) against float16.hpp on every bit pattern.
#include "engine/core/float16.hpp"
#include "engine/serve/model/gemm.hpp"
#include "engine/serve/model/weight_dtype.hpp"
#include "engine/serve/scheduling/worker_pool.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::serve;

namespace {

struct weights16 {
    std::vector<std::uint16_t> bits; // [n, ldw] as stored
    std::vector<float> wide;         // the same values as float32, [n, ldw]
};

// Random weights in [-2, 2] rounded to the dtype; some exact zeros, tiny values (f16 subnormals) and
// negative zeros so every path of the conversion is used.
weights16 make_weights(int n, int ldw, weight_dtype t, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    weights16 w;
    w.bits.resize(std::size_t(n) * ldw);
    w.wide.resize(w.bits.size());
    for (std::size_t i = 0; i < w.bits.size(); ++i) {
        float v = u(rng);
        if (i % 17 == 16) v = 0.0f;
        if (i % 23 == 22) v = -0.0f;
        if (i % 29 == 28) v *= 1e-6f;
        w.bits[i] = t == weight_dtype::bf16 ? f32_to_bf16(v) : f32_to_f16(v);
        w.wide[i] = t == weight_dtype::bf16 ? bf16_to_f32(w.bits[i]) : f16_to_f32(w.bits[i]);
    }
    return w;
}

std::vector<float> random_x(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& f : v)
        f = u(rng);
    return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

} // namespace

class TestServeGemmDtype : public QObject {
    Q_OBJECT

private slots:
    void sixteenBitWeightsEqualFloat32BitForBit_data() {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("m");
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("k");
        for (const auto t : {weight_dtype::bf16, weight_dtype::f16})
            for (const auto& [m, n, k] : {std::tuple{1, 1, 1},
                                          {1, 7, 13},
                                          {3, 50, 37},
                                          {5, 97, 129},
                                          {9, 145, 64},
                                          {17, 53, 203},
                                          {70, 101, 31},
                                          {33, 151, 77},
                                          {1, 801, 301}})
                QTest::addRow("%s m%d n%d k%d", t == weight_dtype::bf16 ? "bf16" : "f16", m, n, k)
                    << int(t) << m << n << k;
    }
    void sixteenBitWeightsEqualFloat32BitForBit() {
        QFETCH(int, dtype);
        QFETCH(int, m);
        QFETCH(int, n);
        QFETCH(int, k);
        const auto t = weight_dtype(dtype);
        const int ldw = k + 3; // rows of w are not contiguous with each other
        const auto w = make_weights(n, ldw, t, 7u + std::uint64_t(n * k));
        const auto x = random_x(std::size_t(m) * k, 11u + std::uint64_t(m));
        worker_pool pool(3);
        for (worker_pool* p : {static_cast<worker_pool*>(nullptr), &pool})
            for (const bool accumulate : {false, true}) {
                std::vector<float> want(std::size_t(m) * n, 0.25f), got(want);
                gemm_nt(m, n, k, 0.75f, x.data(), k, w.wide.data(), ldw, want.data(), n, accumulate, p);
                gemm_nt(m, n, k, 0.75f, x.data(), k, w.bits.data(), t, ldw, got.data(), n, accumulate, p);
                QVERIFY2(same_bits(got, want), p ? "pool" : "one thread");
                // Not a vacuous comparison: the product is not all zeros.
                QVERIFY(
                    std::any_of(want.begin(), want.end(), [](float v) { return v != 0.25f && v != 0.0f; }));
            }
        // Fused work around the 16-bit product: the same bits as the float32 one with the same posts.
        std::vector<float> want(std::size_t(m) * n), got(want.size());
        for (auto* y : {&want, &got}) {
            gemm_fused fused;
            fused.post = [y, m, n](int j0, int j1, int) {
                for (int i = 0; i < m; ++i)
                    for (int j = j0; j < j1; ++j)
                        (*y)[std::size_t(i) * n + j] += float(j);
            };
            if (y == &want)
                gemm_nt(m, n, k, 1.0f, x.data(), k, w.wide.data(), ldw, y->data(), n, false, &pool, fused);
            else
                gemm_nt(m, n, k, 1.0f, x.data(), k, w.bits.data(), t, ldw, y->data(), n, false, &pool, fused);
        }
        QVERIFY(same_bits(got, want));
    }

    // The widening the products use, against the scalar conversions, on all 65536 patterns (NaNs: still NaN,
    // sign kept) and from every start offset modulo the vector width (the tail path).
    void widenMatchesScalarOnEveryPattern() {
        std::vector<std::uint16_t> all(65536);
        for (std::size_t i = 0; i < all.size(); ++i)
            all[i] = std::uint16_t(i);
        for (const auto t : {weight_dtype::bf16, weight_dtype::f16}) {
            for (std::size_t start = 0; start < 9; ++start) {
                const std::size_t count = all.size() - start;
                std::vector<float> out(count);
                widen_to_f32(all.data() + start, t, count, out.data());
                for (std::size_t i = 0; i < count; ++i) {
                    const std::uint16_t h = all[start + i];
                    const float want = t == weight_dtype::bf16 ? bf16_to_f32(h) : f16_to_f32(h);
                    if (std::isnan(want)) {
                        QVERIFY(std::isnan(out[i]));
                        QCOMPARE(std::signbit(out[i]), std::signbit(want));
                        continue;
                    }
                    if (std::memcmp(&out[i], &want, sizeof want) != 0)
                        QFAIL(qPrintable(QStringLiteral("%1 pattern 0x%2: %3 != %4")
                                             .arg(t == weight_dtype::bf16 ? "bf16" : "f16")
                                             .arg(h, 4, 16, QChar('0'))
                                             .arg(double(out[i]))
                                             .arg(double(want))));
                }
            }
        }
        QCOMPARE(weight_dtype_size(weight_dtype::f32), std::size_t(4));
        QCOMPARE(weight_dtype_size(weight_dtype::bf16), std::size_t(2));
    }
};

QTEST_GUILESS_MAIN(TestServeGemmDtype)
#include "test_serve_gemm_dtype.moc"
