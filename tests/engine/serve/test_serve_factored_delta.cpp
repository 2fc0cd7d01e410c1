// The compressed-serving CPU kernel (engine/serve/adapters/factored_delta.hpp):
//  - an analytic case: V = U = the first r unit vectors and a diagonal core add σ_p·x_p to y_p only;
//  - float and half bases, JD-Full (Σᵀ) and JD-Diag cores, odd ranks and shapes (1, 5, 8, 13, 16 ×
//    1, 19, 111, 128, 384), groups of 7 tokens (a group of four and one of three): every output within
//    float rounding of a double-precision scalar reference;
//  - batch invariance: each token computed alone gives exactly the bits it gets inside the group;
//  - factored_shrink once + factored_expand over column ranges (16- and 48-wide blocks, any order) gives
//    exactly add_factored_delta's bits.
#include "engine/core/float16.hpp"
#include "engine/serve/adapters/factored_delta.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::serve;

namespace {

struct problem {
    int r = 0, d_in = 0, d_out = 0, n = 0;
    std::vector<float> vt, ut;                // float bases (values exactly representable as halves)
    std::vector<std::uint16_t> vt16, ut16;    // the same values as halves
    std::vector<std::vector<float>> x, cores; // per token
    std::vector<std::vector<float>> y0;       // per token: initial y
};

problem make_problem(int r, int d_in, int d_out, int n, bool full, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0.0f, 1.0f);
    problem p;
    p.r = r, p.d_in = d_in, p.d_out = d_out, p.n = n;
    auto half_values = [&](std::size_t count, float scale, std::vector<float>& f,
                           std::vector<std::uint16_t>& h) {
        f.resize(count);
        h.resize(count);
        for (std::size_t i = 0; i < count; ++i) {
            h[i] = f32_to_f16(scale * g(rng));
            f[i] = f16_to_f32(h[i]);
        }
    };
    half_values(std::size_t(r) * d_in, 1.0f / std::sqrt(float(d_in)), p.vt, p.vt16);
    half_values(std::size_t(r) * d_out, 1.0f / std::sqrt(float(d_out)), p.ut, p.ut16);
    for (int t = 0; t < n; ++t) {
        std::vector<float> x(static_cast<std::size_t>(d_in)), y(static_cast<std::size_t>(d_out)),
            core(static_cast<std::size_t>(full ? r * r : r));
        for (auto& v : x)
            v = g(rng);
        for (auto& v : y)
            v = g(rng);
        for (auto& v : core)
            v = 0.5f * g(rng);
        p.x.push_back(std::move(x));
        p.y0.push_back(std::move(y));
        p.cores.push_back(std::move(core));
    }
    return p;
}

template <class Elem> factored_basis<Elem> basis_of(const problem& p);
template <> factored_basis<float> basis_of<float>(const problem& p) {
    return {p.vt.data(), p.ut.data(), p.r, p.d_in, p.d_out};
}
template <> factored_basis<std::uint16_t> basis_of<std::uint16_t>(const problem& p) {
    return {p.vt16.data(), p.ut16.data(), p.r, p.d_in, p.d_out};
}

// y after the kernel for tokens [first, first + count) run as one call.
template <class Elem>
std::vector<std::vector<float>> run_kernel(const problem& p, bool full, int first, int count) {
    std::vector<std::vector<float>> y(p.y0.begin() + first, p.y0.begin() + first + count);
    std::vector<factored_token> tokens;
    for (int t = 0; t < count; ++t)
        tokens.push_back({p.x[std::size_t(first + t)].data(), y[std::size_t(t)].data(),
                          p.cores[std::size_t(first + t)].data()});
    std::vector<float> scratch(8 * std::size_t(p.r));
    add_factored_delta(basis_of<Elem>(p), full, tokens, scratch.data());
    return y;
}

template <class Elem> void check_against_reference(int r, int d_in, int d_out, bool full) {
    const int n = 7;
    const problem p = make_problem(r, d_in, d_out, n, full, std::uint64_t(r * 1000003 + d_in * 101 + d_out));
    const auto group = run_kernel<Elem>(p, full, 0, n);
    for (int t = 0; t < n; ++t) {
        std::vector<float> expected = p.y0[std::size_t(t)];
        add_factored_delta_reference(
            basis_of<Elem>(p), full,
            {p.x[std::size_t(t)].data(), expected.data(), p.cores[std::size_t(t)].data()});
        // |delta| is O(1) here; float rounding over r·(d_in + d_out) terms stays well below 1e-4.
        for (int o = 0; o < d_out; ++o) {
            const double diff =
                std::abs(double(group[std::size_t(t)][std::size_t(o)]) - expected[std::size_t(o)]);
            if (diff > 2e-5 * (1.0 + std::abs(double(expected[std::size_t(o)]))))
                QFAIL(
                    qPrintable(QString("r %1 d_in %2 d_out %3 %4 token %5 output %6: kernel %7, reference %8")
                                   .arg(r)
                                   .arg(d_in)
                                   .arg(d_out)
                                   .arg(full ? "full" : "diag")
                                   .arg(t)
                                   .arg(o)
                                   .arg(double(group[std::size_t(t)][std::size_t(o)]), 0, 'g', 9)
                                   .arg(double(expected[std::size_t(o)]), 0, 'g', 9)));
        }
        // Alone, the token gets exactly the bits it got in the group.
        const auto alone = run_kernel<Elem>(p, full, t, 1);
        QVERIFY2(std::memcmp(alone[0].data(), group[std::size_t(t)].data(),
                             sizeof(float) * std::size_t(d_out)) == 0,
                 qPrintable(QString("token %1 differs alone vs in a group (r %2, %3 x %4)")
                                .arg(t)
                                .arg(r)
                                .arg(d_in)
                                .arg(d_out)));
    }
}

} // namespace

class TestServeFactoredDelta : public QObject {
    Q_OBJECT
private slots:
    void unitVectorBasesAddSigmaTimesX() {
        const int r = 5, d = 19;
        std::vector<float> vt(std::size_t(r) * d, 0.0f), ut(std::size_t(r) * d, 0.0f);
        for (int p = 0; p < r; ++p)
            vt[std::size_t(p) * d + p] = ut[std::size_t(p) * d + p] = 1.0f;
        std::vector<float> sigma{0.5f, -2.0f, 3.0f, 0.25f, 1.0f}, x(d), y(d);
        for (int i = 0; i < d; ++i) {
            x[std::size_t(i)] = float(i + 1);
            y[std::size_t(i)] = 100.0f + float(i);
        }
        std::vector<float> scratch(8 * r);
        const factored_token token{x.data(), y.data(), sigma.data()};
        add_factored_delta(factored_basis<float>{vt.data(), ut.data(), r, d, d}, false, {&token, 1},
                           scratch.data());
        for (int i = 0; i < d; ++i) {
            const float expected = 100.0f + float(i) + (i < r ? sigma[std::size_t(i)] * float(i + 1) : 0.0f);
            QCOMPARE(y[std::size_t(i)], expected);
        }
    }

    void matchesReferenceAndIsBatchInvariant_data() {
        QTest::addColumn<int>("r");
        QTest::addColumn<int>("d_in");
        QTest::addColumn<int>("d_out");
        for (int r : {1, 5, 8, 13, 16})
            for (auto [d_in, d_out] : {std::pair{1, 1}, {19, 111}, {128, 128}, {128, 384}, {384, 19}})
                QTest::addRow("r%d_%dx%d", r, d_in, d_out) << r << d_in << d_out;
    }
    void matchesReferenceAndIsBatchInvariant() {
        QFETCH(int, r);
        QFETCH(int, d_in);
        QFETCH(int, d_out);
        for (bool full : {true, false}) {
            check_against_reference<float>(r, d_in, d_out, full);
            check_against_reference<std::uint16_t>(r, d_in, d_out, full);
        }
    }

    void splitShrinkExpandEqualsWhole_data() {
        QTest::addColumn<int>("r");
        QTest::addColumn<int>("d_in");
        QTest::addColumn<int>("d_out");
        QTest::addColumn<int>("block");
        for (int r : {1, 8, 13})
            for (auto [d_in, d_out] : {std::pair{19, 111}, {128, 384}, {384, 19}, {5, 1}})
                for (int block : {16, 48})
                    QTest::addRow("r%d_%dx%d_block%d", r, d_in, d_out, block) << r << d_in << d_out << block;
    }
    void splitShrinkExpandEqualsWhole() {
        QFETCH(int, r);
        QFETCH(int, d_in);
        QFETCH(int, d_out);
        QFETCH(int, block);
        for (bool full : {true, false})
            for (bool half : {false, true}) {
                const int n = 7;
                const problem p = make_problem(r, d_in, d_out, n, full, std::uint64_t(r * 31 + d_out));
                const auto whole =
                    half ? run_kernel<std::uint16_t>(p, full, 0, n) : run_kernel<float>(p, full, 0, n);
                std::vector<std::vector<float>> y(p.y0);
                std::vector<factored_token> tokens;
                for (int t = 0; t < n; ++t)
                    tokens.push_back({p.x[std::size_t(t)].data(), y[std::size_t(t)].data(),
                                      p.cores[std::size_t(t)].data()});
                std::vector<float> w(std::size_t(n) * r, std::nanf("")), scratch(4 * std::size_t(r));
                if (half)
                    factored_shrink(basis_of<std::uint16_t>(p), full, tokens, w.data(), scratch.data());
                else
                    factored_shrink(basis_of<float>(p), full, tokens, w.data(), scratch.data());
                // Last block first: the blocks are independent.
                for (int j0 = (d_out - 1) / block * block; j0 >= 0; j0 -= block) {
                    const int j1 = std::min(d_out, j0 + block);
                    if (half)
                        factored_expand(basis_of<std::uint16_t>(p), tokens, w.data(), j0, j1);
                    else
                        factored_expand(basis_of<float>(p), tokens, w.data(), j0, j1);
                }
                for (int t = 0; t < n; ++t)
                    QVERIFY2(std::memcmp(whole[std::size_t(t)].data(), y[std::size_t(t)].data(),
                                         sizeof(float) * std::size_t(d_out)) == 0,
                             qPrintable(QString("token %1 (%2, %3)")
                                            .arg(t)
                                            .arg(full ? "full" : "diag")
                                            .arg(half ? "half" : "float")));
            }
    }

    void halfAndFloatBasesAgree() {
        // The same values stored as halves or floats: the kernel widens halves exactly, so the two paths
        // differ only by the order-independent rounding of identical products (here: not at all).
        const problem p = make_problem(8, 128, 384, 6, true, 42);
        const auto f = run_kernel<float>(p, true, 0, 6);
        const auto h = run_kernel<std::uint16_t>(p, true, 0, 6);
        for (int t = 0; t < 6; ++t)
            QVERIFY(std::memcmp(f[std::size_t(t)].data(), h[std::size_t(t)].data(), sizeof(float) * 384) ==
                    0);
    }
};

QTEST_GUILESS_MAIN(TestServeFactoredDelta)
#include "test_serve_factored_delta.moc"
