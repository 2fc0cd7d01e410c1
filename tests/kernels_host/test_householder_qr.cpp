// The batched QR kernel's per-matrix algorithm (kernels/householder_qr.hpp, run here through
// qr_householder_host: the kernel's phases with its emulated threads one after another) against LAPACK:
// random, planted ill-conditioned (singular values 1 .. 1e-6), the subspace step's [Q, M Q] shape (second
// half nearly in the span of the first), exactly rank-deficient (duplicate and zero columns, a zero and a
// rank-1 matrix) and odd tall-skinny shapes (chunk boundaries). Checked: Q^T Q = I and Q R = A within the
// bounds of double Householder rounded to fp32, R upper with zeros below, Q and R equal to LAPACK's double
// QR (dgeqrf + dorgqr, rounded) and to its single QR (sgeqrf + sorgqr: the CPU backend's qr()) within
// bounds derived from the backward error and the condition number (tests/kernels_host/qr_reference.hpp),
// R's diagonal signs LAPACK's (dlarfg) wherever alpha is clear of rounding, emulated block sizes 1 .. 1024
// differing only by rounding, NaN / Inf input and an R overflowing fp32 reported, bad arguments rejected.
#include "engine/compress/dense.hpp"
#include "kernels/householder_qr.hpp"
#include "tests/kernels_host/qr_reference.hpp"

#include <QTest>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::qr_test;
namespace kn = lorafleet::kernels;

namespace {

struct fp32_matrix {
    std::int64_t m = 0, n = 0;
    std::vector<float> a; // column-major, leading dimension m
};

fp32_matrix from_dense(const dense& d) {
    fp32_matrix f{d.m, d.n, std::vector<float>(d.x.size())};
    for (std::size_t i = 0; i < d.x.size(); ++i)
        f.a[i] = static_cast<float>(d.x[i]);
    return f;
}

dense gaussian(std::int64_t m, std::int64_t n, std::mt19937& rng) {
    std::normal_distribution<double> g;
    dense d(m, n);
    for (auto& x : d.x)
        x = g(rng);
    return d;
}

dense random_orthonormal(std::int64_t m, std::int64_t n, std::mt19937& rng) {
    return lapack_qr_f64(gaussian(m, n, rng)).q;
}

dense product(const dense& a, const dense& b) {
    dense c(a.m, b.n);
    for (std::int64_t j = 0; j < b.n; ++j)
        for (std::int64_t k = 0; k < a.n; ++k)
            for (std::int64_t i = 0; i < a.m; ++i)
                c(i, j) += a(i, k) * b(k, j);
    return c;
}

// U diag(s) V^T with s log-spaced from 1 down to smin.
fp32_matrix planted(std::int64_t m, std::int64_t n, double smin, unsigned seed) {
    std::mt19937 rng(seed);
    dense u = random_orthonormal(m, n, rng), v = random_orthonormal(n, n, rng);
    for (std::int64_t j = 0; j < n; ++j) {
        const double s = std::pow(smin, n > 1 ? double(j) / double(n - 1) : 0.0);
        for (std::int64_t i = 0; i < m; ++i)
            u(i, j) *= s;
    }
    dense vt(n, n);
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 0; j < n; ++j)
            vt(i, j) = v(j, i);
    return from_dense(product(u, vt));
}

// The subspace step's input [Q, M Q] near convergence: Q orthonormal [d, r], M Q = Q diag(lambda) + eps E.
fp32_matrix krylov_pair(std::int64_t d, std::int64_t r, double eps, unsigned seed) {
    std::mt19937 rng(seed);
    const dense q = random_orthonormal(d, r, rng), e = gaussian(d, r, rng);
    dense z(d, 2 * r);
    for (std::int64_t j = 0; j < r; ++j) {
        const double lambda = 100.0 / double(j + 1);
        for (std::int64_t i = 0; i < d; ++i) {
            z(i, j) = static_cast<float>(q(i, j)); // the step feeds fp32 bases
            z(i, r + j) = lambda * q(i, j) + eps * e(i, j);
        }
    }
    return from_dense(z);
}

struct factored {
    std::vector<float> q, r;
    int status = -1;
};

factored run(const fp32_matrix& a, int threads) {
    factored f{a.a, std::vector<float>(static_cast<std::size_t>(a.n * a.n), std::nanf("")), -1};
    f.status =
        kn::qr_householder_host(a.m, a.n, f.q.data(), std::max<std::int64_t>(a.m, 1), f.r.data(), threads);
    return f;
}

// The kernel's phases with the emulated threads of each phase run in the given order: on the device they
// run concurrently, so the result must not depend on it (no thread reads what another writes in the same
// phase, no two write the same place).
struct ordered_block {
    std::vector<int> order;
    int threads() const { return static_cast<int>(order.size()); }
    template <class F> void phase(F&& f) const {
        for (int t : order)
            f(t);
    }
};

factored run_ordered(const fp32_matrix& a, std::vector<int> order) {
    const int T = static_cast<int>(order.size());
    factored f{a.a, std::vector<float>(static_cast<std::size_t>(a.n * a.n)), 0};
    std::vector<double> w(a.a.size()), tau(static_cast<std::size_t>(a.n)),
        shared(static_cast<std::size_t>(kn::qr_shared_doubles(T, a.n)));
    int status[2] = {-1, -1};
    const kn::qr_matrix mat{a.m, a.n, f.q.data(), a.m, f.r.data(), w.data(), tau.data(), status};
    const kn::qr_shared sh{shared.data(), shared.data() + 2, shared.data() + 2 + kn::qr_chunk * T};
    ordered_block b{std::move(order)};
    kn::qr_householder(b, mat, sh);
    f.status = status[0] | status[1];
    return f;
}

std::string where(const char* what, std::int64_t i, std::int64_t j, double got, double want, double bound) {
    return std::string(what) + " (" + std::to_string(i) + ", " + std::to_string(j) +
           "): " + std::to_string(got) + " vs " + std::to_string(want) + " beyond " + std::to_string(bound);
}

// Q^T Q = I, Q R = A, R upper with exact zeros below, everything finite. Bounds (qr_reference.hpp): our
// double Q is within e = sqrt(n) g64 of an orthogonal matrix and Q R = A + dA with ||da_j|| <= g64 ||a_j||;
// rounding Q and R to fp32 adds (2u + u^2) |Q||R| terms; the check's own double sums add m v (resp. n v).
std::string check_structure(const fp32_matrix& a, const factored& f) {
    const auto m = a.m, n = a.n;
    const double g = householder_g(m, n, u64), e = std::sqrt(double(n)) * g;
    const double rounding = (2 * u32 + u32 * u32) * (1 + e) * (1 + e);
    for (float x : f.q)
        if (!std::isfinite(x)) return "non-finite Q";
    for (float x : f.r)
        if (!std::isfinite(x)) return "non-finite R";
    for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = j + 1; i < n; ++i)
            if (f.r[std::size_t(i + j * n)] != 0.0f)
                return where("R below the diagonal", i, j, f.r[std::size_t(i + j * n)], 0, 0);
    const double orth = rounding + 2 * e + e * e + 1.01 * double(m) * u64;
    for (std::int64_t p = 0; p < n; ++p)
        for (std::int64_t s = 0; s < n; ++s) {
            double dot = 0;
            for (std::int64_t i = 0; i < m; ++i)
                dot += double(f.q[std::size_t(i + p * m)]) * double(f.q[std::size_t(i + s * m)]);
            if (std::abs(dot - (p == s ? 1.0 : 0.0)) > orth) return where("Q^T Q", p, s, dot, p == s, orth);
        }
    const dense ad = widen(a.a.data(), m, n, m);
    for (std::int64_t j = 0; j < n; ++j) {
        const double bound = (rounding * (1 + g) + g + 2 * e + 2 * double(n) * u64) * column_norm(ad, j);
        for (std::int64_t i = 0; i < m; ++i) {
            double qr = 0;
            for (std::int64_t k = 0; k <= j; ++k)
                qr += double(f.q[std::size_t(i + k * m)]) * double(f.r[std::size_t(k + j * n)]);
            if (std::abs(qr - ad(i, j)) > bound) return where("Q R - A", i, j, qr, ad(i, j), bound);
        }
    }
    return {};
}

// Ours against LAPACK's double QR: both are Householder in double, each within dq(g64) of the exact Q(A)
// (R within r_distance), then rounded to fp32 (u per entry). Where a column's alpha clears 10x that
// perturbation size, R(k, k) must have dlarfg's sign: -sign(alpha), or sign(alpha) for the identity
// reflector of a square matrix's last column. Returns an error or empty; counts the sign checks made.
std::string check_against_double(const fp32_matrix& a, const factored& f, int& signs_checked) {
    const auto m = a.m, n = a.n;
    const dense ad = widen(a.a.data(), m, n, m);
    const auto ref = lapack_qr_f64(ad);
    if (!ref.ok) return "LAPACK dgeqrf / dorgqr failed";
    const double kappa = condition(ad), g = householder_g(m, n, u64);
    const double dq = 2 * q_distance(kappa, n, g), dr = 2 * r_distance(kappa, n, g, norm2(ad), frobenius(ad));
    for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i < m; ++i) {
            const double got = f.q[std::size_t(i + j * m)], want = ref.q(i, j);
            const double bound = 2 * u32 * std::max(std::abs(got), std::abs(want)) + dq * (1 + u32);
            if (!(std::abs(got - want) <= bound)) return where("Q vs dgeqrf", i, j, got, want, bound);
        }
    for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i <= j; ++i) {
            const double got = f.r[std::size_t(i + j * n)], want = ref.r(i, j);
            const double bound = 2 * u32 * std::max(std::abs(got), std::abs(want)) + dr * (1 + u32);
            if (!(std::abs(got - want) <= bound)) return where("R vs dgeqrf", i, j, got, want, bound);
        }
    for (std::int64_t k = 0; k < n; ++k) {
        const double alpha = ref.alpha[std::size_t(k)];
        if (std::abs(alpha) <= 10 * (dq + g) * column_norm(ad, k)) continue;
        const double rkk = f.r[std::size_t(k + k * n)];
        const bool identity = k == m - 1;
        if ((rkk < 0) != (identity ? alpha < 0 : alpha > 0))
            return where("R diagonal sign", k, k, rkk, alpha, 0);
        ++signs_checked;
    }
    return {};
}

// Ours against the CPU backend's qr() (LAPACK sgeqrf + sorgqr): within dq(g32) + dq(g64) (entrywise) where
// that bound is informative (< 0.5), and equal R diagonal signs where alpha clears 10x it. Counts the
// matrices compared.
std::string check_against_single(const fp32_matrix& a, const factored& f, int& compared) {
    const auto m = a.m, n = a.n;
    compress::matrix in(m, n);
    std::copy(a.a.begin(), a.a.end(), in.data.begin());
    const auto [q, r] = compress::qr(in);
    const dense ad = widen(a.a.data(), m, n, m);
    const double kappa = condition(ad), g32 = householder_g(m, n, u32), g64 = householder_g(m, n, u64);
    const double dq = q_distance(kappa, n, g32) + q_distance(kappa, n, g64);
    if (!(dq < 0.5)) return {};
    const double dr = r_distance(kappa, n, g32, norm2(ad), frobenius(ad)) +
                      r_distance(kappa, n, g64, norm2(ad), frobenius(ad));
    for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i < m; ++i) {
            const double got = f.q[std::size_t(i + j * m)], want = q(i, j);
            if (!(std::abs(got - want) <= dq + u32 * std::abs(got)))
                return where("Q vs sgeqrf", i, j, got, want, dq);
        }
    for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i < n; ++i) {
            const double got = f.r[std::size_t(i + j * n)], want = r(i, j);
            if (!(std::abs(got - want) <= dr + u32 * std::abs(got)))
                return where("R vs sgeqrf", i, j, got, want, dr);
        }
    const auto ref = lapack_qr_f64(ad);
    for (std::int64_t k = 0; k < n; ++k)
        if (std::abs(ref.alpha[std::size_t(k)]) > 10 * (dq + g32) * column_norm(ad, k) &&
            (f.r[std::size_t(k + k * n)] < 0) != (r(k, k) < 0))
            return where("R diagonal sign vs sgeqrf", k, k, f.r[std::size_t(k + k * n)], r(k, k), 0);
    ++compared;
    return {};
}

} // namespace

class TestHouseholderQr : public QObject {
    Q_OBJECT

private slots:
    void randomAndOddShapesMatchLapack() {
        std::mt19937 rng(11);
        const std::vector<std::pair<int, int>> shapes = {{96, 8},   {40, 16}, {33, 1},   {12, 12},
                                                         {1, 1},    {5, 3},   {1001, 3}, {257, 9},
                                                         {129, 17}, {64, 64}, {300, 31}};
        int signs = 0, single = 0;
        for (auto [m, n] : shapes) {
            const auto a = from_dense(gaussian(m, n, rng));
            const auto f = run(a, 256);
            QCOMPARE(f.status, 0);
            const std::string s = check_structure(a, f), d = check_against_double(a, f, signs),
                              c = check_against_single(a, f, single);
            const auto tag = std::to_string(m) + "x" + std::to_string(n) + ": ";
            QVERIFY2(s.empty(), (tag + s).c_str());
            QVERIFY2(d.empty(), (tag + d).c_str());
            QVERIFY2(c.empty(), (tag + c).c_str());
        }
        QVERIFY(signs >= 150); // nearly every one of the 165 diagonal signs was decided
        QVERIFY(single >= 8);  // the sgeqrf comparison was informative for most shapes
    }

    void mistralSizedColumnsMatchLapack() {
        std::mt19937 rng(12);
        const auto a = from_dense(gaussian(4096, 32, rng));
        const auto f = run(a, 256);
        QCOMPARE(f.status, 0);
        int signs = 0, single = 0;
        QVERIFY2(check_structure(a, f).empty(), check_structure(a, f).c_str());
        const auto d = check_against_double(a, f, signs);
        QVERIFY2(d.empty(), d.c_str());
        QCOMPARE(signs, 32);
        const auto c = check_against_single(a, f, single);
        QVERIFY2(c.empty(), c.c_str());
        QCOMPARE(single, 1);
    }

    void plantedIllConditioned() {
        for (auto [m, n, seed] : {std::tuple<int, int, unsigned>{300, 24, 1}, {2048, 32, 2}, {97, 97, 3}}) {
            const auto a = planted(m, n, 1e-6, seed);
            const double kappa = condition(widen(a.a.data(), m, n, m));
            QVERIFY2(kappa > 3e5 && kappa < 3e6, std::to_string(kappa).c_str()); // the plant survived fp32
            const auto f = run(a, 256);
            QCOMPARE(f.status, 0);
            int signs = 0;
            const auto s = check_structure(a, f), d = check_against_double(a, f, signs);
            QVERIFY2(s.empty(), s.c_str());
            QVERIFY2(d.empty(), d.c_str());
            QVERIFY(signs > 0);
        }
    }

    void subspaceStepShape() {
        // Near convergence M Q is almost in span(Q): the second half of [Q, M Q] is nearly dependent.
        for (double eps : {1e-2, 1e-4, 1e-6}) {
            const auto a = krylov_pair(4096, 16, eps, 7);
            const auto f = run(a, 256);
            QCOMPARE(f.status, 0);
            int signs = 0;
            const auto s = check_structure(a, f), d = check_against_double(a, f, signs);
            QVERIFY2(s.empty(), s.c_str());
            QVERIFY2(d.empty(), d.c_str());
            // The first half is already orthonormal: R11 = diag(+-1) up to rounding; R's diagonal in the
            // second half is at most the part of its column outside span(Q): eps ||e_k|| (||e_k|| ~ 64 for
            // 4096 Gaussians; 1.2 * 64 is exceeded with negligible probability) plus lambda (<= 100) times
            // Q's fp32 rounding (u ||q_j|| = u).
            for (int k = 0; k < 16; ++k)
                QVERIFY(std::abs(std::abs(f.r[std::size_t(k + k * 32)]) - 1.0f) < 1e-5f);
            for (int k = 16; k < 32; ++k)
                QVERIFY(std::abs(f.r[std::size_t(k + k * 32)]) < 1.2 * 64 * eps + 100 * 2 * u32);
        }
    }

    void rankDeficientStaysOrthonormal() {
        std::mt19937 rng(13);
        // Duplicate columns (3 = 1, 6 = 0 + 2) and a zero column (5).
        dense d = gaussian(50, 8, rng);
        for (std::int64_t i = 0; i < d.m; ++i) {
            d(i, 3) = float(d(i, 1));
            d(i, 5) = 0.0;
            d(i, 6) = float(d(i, 0)) + float(d(i, 2));
        }
        auto a = from_dense(d);
        for (std::int64_t i = 0; i < a.m; ++i) // exact duplicates in fp32
            a.a[std::size_t(i + 3 * a.m)] = a.a[std::size_t(i + a.m)];
        auto f = run(a, 256);
        QCOMPARE(f.status, 0);
        auto s = check_structure(a, f);
        QVERIFY2(s.empty(), s.c_str());
        for (int i = 0; i < 8; ++i) // the zero column's R is exactly zero (a zero vector stays zero)
            QCOMPARE(std::abs(f.r[std::size_t(i + 5 * 8)]), 0.0f);
        QVERIFY(std::abs(f.r[std::size_t(3 + 3 * 8)]) <
                1e-12f * std::abs(f.r[std::size_t(1 + 1 * 8)]) + 1e-30f);

        // A zero matrix: every reflector is the identity (tau = 0), so Q = I(:, 0:n), R = 0 exactly.
        fp32_matrix z{20, 6, std::vector<float>(120, 0.0f)};
        f = run(z, 64);
        QCOMPARE(f.status, 0);
        for (int j = 0; j < 6; ++j)
            for (int i = 0; i < 20; ++i)
                QCOMPARE(f.q[std::size_t(i + j * 20)], i == j ? 1.0f : 0.0f);
        for (float x : f.r)
            QCOMPARE(std::abs(x), 0.0f);

        // Rank 1 (all ones): R(0, :) = -sqrt(m), the rest rounding noise; Q still orthonormal.
        fp32_matrix ones{30, 5, std::vector<float>(150, 1.0f)};
        f = run(ones, 32);
        QCOMPARE(f.status, 0);
        s = check_structure(ones, f);
        QVERIFY2(s.empty(), s.c_str());
        for (int j = 0; j < 5; ++j)
            QVERIFY(std::abs(f.r[std::size_t(j * 5)] + std::sqrt(30.0f)) < 1e-5f);
    }

    void blockSizesDifferOnlyByRounding() {
        // T changes the reduction tree (and so the rounding), nothing else: each T is within the double
        // perturbation bound of T = 256 (two double Householder runs, 2 dq(g64)) plus fp32 rounding, and
        // the same T gives the same bits again.
        for (const auto& a : {from_dense([] {
                                  std::mt19937 rng(21);
                                  return gaussian(700, 20, rng);
                              }()),
                              planted(300, 24, 1e-6, 4)}) {
            const auto ref = run(a, 256);
            const dense ad = widen(a.a.data(), a.m, a.n, a.m);
            const double dq = 2 * q_distance(condition(ad), a.n, householder_g(a.m, a.n, u64));
            const double dr =
                2 * r_distance(condition(ad), a.n, householder_g(a.m, a.n, u64), norm2(ad), frobenius(ad));
            std::size_t differing = 0;
            for (int t : {1, 2, 32, 64, 128, 256, 1024}) {
                const auto f = run(a, t);
                QCOMPARE(f.status, 0);
                const auto again = run(a, t);
                QVERIFY(f.q == again.q && f.r == again.r);
                for (std::size_t i = 0; i < f.q.size(); ++i) {
                    const double bound = 2 * u32 * std::max(std::abs(f.q[i]), std::abs(ref.q[i])) + dq;
                    QVERIFY2(std::abs(double(f.q[i]) - ref.q[i]) <= bound, std::to_string(t).c_str());
                    differing += f.q[i] != ref.q[i] ? 1 : 0;
                }
                for (std::size_t i = 0; i < f.r.size(); ++i) {
                    const double bound = 2 * u32 * std::max(std::abs(f.r[i]), std::abs(ref.r[i])) + dr;
                    QVERIFY2(std::abs(double(f.r[i]) - ref.r[i]) <= bound, std::to_string(t).c_str());
                }
            }
            // (In practice the double results differ in the last bits only, which the fp32 rounding
            // mostly hides.)
            qInfo("%zu of %zu Q entries differ from T = 256 for some T", differing, ref.q.size() * 7);
        }
    }

    void threadOrderWithinAPhaseDoesNotMatter() {
        std::mt19937 rng(51);
        for (const auto& a : {from_dense(gaussian(203, 19, rng)), planted(64, 64, 1e-6, 5)}) {
            for (int T : {4, 32, 64}) {
                std::vector<int> forward(static_cast<std::size_t>(T));
                for (int t = 0; t < T; ++t)
                    forward[static_cast<std::size_t>(t)] = t;
                const auto want = run_ordered(a, forward);
                QCOMPARE(want.status, 0);
                const auto host = run(a, T); // qr_householder_host is the forward order
                QVERIFY(host.q == want.q && host.r == want.r);
                auto reversed = forward;
                std::reverse(reversed.begin(), reversed.end());
                auto shuffled = forward;
                std::shuffle(shuffled.begin(), shuffled.end(), rng);
                for (const auto& order : {reversed, shuffled}) {
                    const auto got = run_ordered(a, order);
                    QCOMPARE(got.status, 0);
                    QVERIFY(got.q == want.q);
                    QVERIFY(got.r == want.r);
                }
            }
        }
    }

    void paddedLeadingDimensionAndNoR() {
        std::mt19937 rng(31);
        const auto a = from_dense(gaussian(17, 5, rng));
        const auto want = run(a, 128);
        const std::int64_t lda = 20;
        std::vector<float> padded(std::size_t(lda * 5), 42.0f);
        for (int j = 0; j < 5; ++j)
            for (int i = 0; i < 17; ++i)
                padded[std::size_t(i + j * lda)] = a.a[std::size_t(i + j * 17)];
        QCOMPARE(kn::qr_householder_host(17, 5, padded.data(), lda, nullptr, 128), 0);
        for (int j = 0; j < 5; ++j) {
            for (int i = 0; i < 17; ++i)
                QCOMPARE(padded[std::size_t(i + j * lda)], want.q[std::size_t(i + j * 17)]);
            for (int i = 17; i < lda; ++i)
                QCOMPARE(padded[std::size_t(i + j * lda)], 42.0f);
        }
    }

    void nonFiniteIsReported() {
        std::mt19937 rng(41);
        auto a = from_dense(gaussian(40, 6, rng));
        auto bad = a;
        bad.a[77] = std::nanf("");
        QCOMPARE(run(bad, 256).status & kn::qr_nonfinite_input, kn::qr_nonfinite_input);
        bad = a;
        bad.a[5] = -std::numeric_limits<float>::infinity();
        QCOMPARE(run(bad, 64).status & kn::qr_nonfinite_input, kn::qr_nonfinite_input);
        // Finite input whose column norm exceeds fp32: R(0, 0) = -2 * 3e38 overflows; Q stays finite.
        fp32_matrix big{4, 2, {3e38f, 3e38f, 3e38f, 3e38f, 1.0f, 2.0f, 3.0f, 4.0f}};
        const auto f = run(big, 32);
        QCOMPARE(f.status, kn::qr_nonfinite_output);
        for (int i = 0; i < 8; ++i)
            QVERIFY(std::isfinite(f.q[std::size_t(i)]));
        QCOMPARE(run(a, 256).status, 0);
    }

    void badArgumentsAreRejected() {
        std::vector<float> a(12, 1.0f), r(16);
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                                 kn::qr_householder_host(3, 4, a.data(), 3, r.data(), 64));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                                 kn::qr_householder_host(4, 3, a.data(), 3, r.data(), 64));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                                 kn::qr_householder_host(4, 3, a.data(), 4, r.data(), 96));
        QVERIFY_THROWS_EXCEPTION(std::invalid_argument,
                                 kn::qr_householder_host(4, 3, a.data(), 4, r.data(), 2048));
        QCOMPARE(kn::qr_householder_host(4, 0, a.data(), 4, nullptr, 64), 0);
    }
};

QTEST_GUILESS_MAIN(TestHouseholderQr)
#include "test_householder_qr.moc"
