// References and error bounds for the batched Householder QR (kernels/householder_qr.hpp), shared by its
// CPU test (test_householder_qr.cpp) and the device test (tests/kernels/test_qr_many_cuda.cpp).
//
// References: LAPACK in double (dgeqrf + dorgqr on the exact double copy of the fp32 input: the same
// algorithm as the kernel, rounded differently), LAPACK in single (sgeqrf + sorgqr: what the CPU backend's
// qr() computes), dlarfg's alpha of every column (dgeqrf's reflectors applied to the column, dormqr), and
// the 2-norm condition number (dgesvd).
//
// Bounds (u = 2^-24, v = 2^-53). Householder QR in precision w of an [m, n] matrix (Higham, Accuracy and
// Stability, Thm 19.4 and Lemma 19.3): the computed R satisfies A + dA = Q~ R with Q~ exactly orthogonal,
// ||da_j|| <= g ||a_j||, and the computed thin Q is within sqrt(n) g of Q~ in the Frobenius norm, where
// g = c m n w; the theorems' small constant c is taken as 1 (the worst case grows like m n, actual errors
// like sqrt(m n)). The first-order perturbation bound of the Q factor (Sun 1991): ||Q(A + dA) - Q(A)||_F
// <= (1 + sqrt 2) kappa_2(A) ||dA||_F / ||A||_2, and ||dA||_F <= g ||A||_F <= g sqrt(n) ||A||_2. So a
// computed Q is within dq(g) = (1 + sqrt 2) kappa sqrt(n) g + sqrt(n) g of the exact Q(A) (Frobenius, so
// also entrywise), and since R = Q^T A, a computed R within dq(g) ||A||_2 + g ||A||_F (Frobenius).
// Two computations are within the sum of their two bounds; an fp32 rounding adds u |x| per entry.
#pragma once

#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace lorafleet::qr_test {

constexpr double u32 = 1.0 / 16777216.0;         // 2^-24
constexpr double u64 = 1.0 / 9007199254740992.0; // 2^-53

// Column-major [m, n] with leading dimension m.
struct dense {
    std::int64_t m = 0, n = 0;
    std::vector<double> x;
    dense() = default;
    dense(std::int64_t rows, std::int64_t cols)
        : m(rows), n(cols), x(static_cast<std::size_t>(rows * cols), 0.0) {}
    double& operator()(std::int64_t i, std::int64_t j) { return x[static_cast<std::size_t>(i + j * m)]; }
    double operator()(std::int64_t i, std::int64_t j) const { return x[static_cast<std::size_t>(i + j * m)]; }
};

inline dense widen(const float* a, std::int64_t m, std::int64_t n, std::int64_t lda) {
    dense d(m, n);
    for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i < m; ++i)
            d(i, j) = a[i + j * lda];
    return d;
}

// Q [m, n] and R [n, n] of LAPACK's double Householder QR, and dlarfg's alpha of every column (the
// diagonal entry before its reflector: R(k, k) = -sign(alpha_k) ||.|| unless the reflector is the identity).
struct double_qr {
    dense q, r;
    std::vector<double> alpha;
    bool ok = false;
};

inline double_qr lapack_qr_f64(const dense& a) {
    const auto m = a.m, n = a.n;
    double_qr out;
    dense f = a;
    std::vector<double> tau(static_cast<std::size_t>(std::max<std::int64_t>(n, 1)));
    if (LAPACKE_dgeqrf(LAPACK_COL_MAJOR, int(m), int(n), f.x.data(), int(m), tau.data()) != 0) return out;
    out.r = dense(n, n);
    for (std::int64_t j = 0; j < n; ++j)
        for (std::int64_t i = 0; i <= j; ++i)
            out.r(i, j) = f(i, j);
    out.alpha.resize(static_cast<std::size_t>(n));
    for (std::int64_t k = 0; k < n; ++k) {
        std::vector<double> c(static_cast<std::size_t>(m));
        for (std::int64_t i = 0; i < m; ++i)
            c[static_cast<std::size_t>(i)] = a(i, k);
        if (k > 0 && LAPACKE_dormqr(LAPACK_COL_MAJOR, 'L', 'T', int(m), 1, int(k), f.x.data(), int(m),
                                    tau.data(), c.data(), int(m)) != 0)
            return out;
        out.alpha[static_cast<std::size_t>(k)] = c[static_cast<std::size_t>(k)];
    }
    if (LAPACKE_dorgqr(LAPACK_COL_MAJOR, int(m), int(n), int(n), f.x.data(), int(m), tau.data()) != 0)
        return out;
    out.q = f;
    out.ok = true;
    return out;
}

// Singular values, descending (empty on failure).
inline std::vector<double> singular_values(const dense& a) {
    dense f = a;
    std::vector<double> s(static_cast<std::size_t>(std::min(a.m, a.n))),
        superb(static_cast<std::size_t>(std::max<std::int64_t>(std::min(a.m, a.n), 2)));
    if (LAPACKE_dgesvd(LAPACK_COL_MAJOR, 'N', 'N', int(a.m), int(a.n), f.x.data(), int(a.m), s.data(),
                       nullptr, 1, nullptr, 1, superb.data()) != 0)
        return {};
    return s;
}

// kappa_2 (inf for a rank-deficient matrix or an SVD failure).
inline double condition(const dense& a) {
    const auto s = singular_values(a);
    if (s.empty() || s.back() == 0.0) return INFINITY;
    return s.front() / s.back();
}

inline double norm2(const dense& a) {
    const auto s = singular_values(a);
    return s.empty() ? INFINITY : s.front();
}

inline double frobenius(const dense& a) {
    double s = 0;
    for (double x : a.x)
        s += x * x;
    return std::sqrt(s);
}

inline double column_norm(const dense& a, std::int64_t j) {
    double s = 0;
    for (std::int64_t i = 0; i < a.m; ++i)
        s += a(i, j) * a(i, j);
    return std::sqrt(s);
}

// The backward-error size g = m n w of a Householder QR in unit roundoff w.
inline double householder_g(std::int64_t m, std::int64_t n, double w) {
    return double(m) * double(n) * w;
}

// dq(g): a computed Q's Frobenius distance to the exact Q(A), for condition number kappa.
inline double q_distance(double kappa, std::int64_t n, double g) {
    return (1.0 + std::sqrt(2.0)) * kappa * std::sqrt(double(n)) * g + std::sqrt(double(n)) * g;
}

// A computed R's Frobenius distance to the exact R(A).
inline double r_distance(double kappa, std::int64_t n, double g, double a_norm2, double a_frobenius) {
    return q_distance(kappa, n, g) * a_norm2 + g * a_frobenius;
}

} // namespace lorafleet::qr_test
