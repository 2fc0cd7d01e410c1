// Thin QR of one matrix by one thread block: kernels::qr_thin_many (qr_batched.cu) runs one block per
// matrix, every matrix of a call in ONE launch; qr_householder_host (below) runs the very same functions
// on the CPU, so the tests check the device's arithmetic here.
//
// Algorithm: LAPACK's unblocked Householder QR (dgeqr2) and the explicit thin Q by backward accumulation
// (dorg2r), in DOUBLE on a double working copy of the fp32 input; Q [m, n] and R [n, n] (upper, zeros
// below) rounded to fp32 at the end. dlarfg's convention: for column k with alpha = w(k, k), x = w(k+1:m,
// k): x^T x = 0 -> tau = 0 (H = I, alpha and x kept: also the last column of a square matrix); else
// beta = -copysign(sqrt(alpha^2 + x^T x), alpha), tau = (beta - alpha) / beta, v = (1, x / (alpha - beta)).
// So R's diagonal signs are LAPACK's (sgeqrf / sorgqr: the CPU's qr() in engine/compress/dense.cpp), and a
// zero or dependent column still gives an orthonormal Q. Differences from the reference routines, all
// within rounding: the sums of squares and dot products are plain fma sums in double (no dnrm2 scaling:
// squares of fp32-range values cannot overflow or underflow a double, so dlarfg's rescaling loop is not
// needed either), and the dot products of a reflector with the trailing columns are taken with the
// unscaled x in the same pass as x^T x (v^T w(k:m, c) = w(k, c) + x^T w(k+1:m, c) / (alpha - beta)).
//
// Parallel shape (deterministic: the same bits for any GPU, any scheduling): T threads (a power of two);
// a PHASE runs f(t) for every t < T and ends with a barrier. Thread t owns rows t, t + T, ... of the
// row-parallel phases; a reduction is per-thread partial sums over those rows (in increasing row order)
// followed by a fixed binary tree over the T partials (qr_chunk columns at a time). Every multiply-add is
// an explicit fma and every other operation an explicitly rounded one (the qr_fp helpers: __dmul_rn etc.
// on the device, which nvcc never contracts into an fma; plain IEEE operations here, where no product
// feeds an addition, so a host compiler has nothing to contract either), so the device and the host
// emulation give bit-identical results for the same T. Different T differ by rounding only.
//
// Memory of one matrix: the [m, n] double working copy and tau [n] (device scratch), qr_chunk * T + n + 2
// doubles of block-shared scratch. Cost ~ 4 m n^2 flops; per column ceil((n - k) / qr_chunk) reductions.
// Non-finite input sets status[0], a non-finite fp32 result (R overflowing fp32) status[1]; the caller
// turns either into an error. The HD functions are C++17 and use only <cmath>-level math (device code).
#pragma once

#include "kernels/serve_hd.hpp" // LORAFLEET_HD

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace lorafleet::kernels {

// Columns whose dot products are reduced together (registers per thread in the partial-sum phase).
constexpr int qr_chunk = 8;
// Threads per block of the device kernel (qr_thin_many); qr_householder_host with this count gives its bits.
constexpr int qr_block_threads = 256;

// Explicitly rounded double operations (see the header comment): identical on the host and the device.
namespace qr_fp {
LORAFLEET_HD double mul(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
LORAFLEET_HD double add(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}
LORAFLEET_HD double sub(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __dsub_rn(a, b);
#else
    return a - b;
#endif
}
LORAFLEET_HD double fma(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
    return __fma_rn(a, b, c);
#else
    return std::fma(a, b, c);
#endif
}
LORAFLEET_HD double div(double a, double b) {
#if defined(__CUDA_ARCH__)
    return __ddiv_rn(a, b);
#else
    return a / b;
#endif
}
LORAFLEET_HD double sqrt(double a) {
#if defined(__CUDA_ARCH__)
    return __dsqrt_rn(a);
#else
    return std::sqrt(a);
#endif
}
LORAFLEET_HD double copysign(double a, double b) {
#if defined(__CUDA_ARCH__)
    return ::copysign(a, b);
#else
    return std::copysign(a, b);
#endif
}
// Round to nearest even (overflow -> +-Inf).
LORAFLEET_HD float narrow(double a) {
#if defined(__CUDA_ARCH__)
    return __double2float_rn(a);
#else
    return static_cast<float>(a);
#endif
}
LORAFLEET_HD bool finite(double a) {
#if defined(__CUDA_ARCH__)
    return isfinite(a);
#else
    return std::isfinite(a);
#endif
}
} // namespace qr_fp

// One matrix as a block sees it. Column-major; w(i, j) = w[i + j m].
struct qr_matrix {
    std::int64_t m = 0, n = 0; // m >= n >= 1
    float* a = nullptr;        // [m, n] fp32 input (leading dimension lda), overwritten with Q
    std::int64_t lda = 1;
    float* r = nullptr;    // [n, n] R (leading dimension n), or null
    double* w = nullptr;   // [m, n] double working copy (leading dimension m)
    double* tau = nullptr; // [n] the reflectors' scalars
    int* status = nullptr; // [2]: non-finite input, non-finite fp32 output
};

// The block-shared scratch (shared memory on the device).
struct qr_shared {
    double* scal = nullptr; // [2]: the current reflector's x scale 1 / (alpha - beta), and beta
    double* red = nullptr;  // [qr_chunk * T]: partial sums, column c of a chunk at red[c T + t]
    double* col = nullptr;  // [n]: per-column values of the current step
};

// Doubles of qr_shared for T threads and at most n columns.
inline std::int64_t qr_shared_doubles(int threads, std::int64_t n) {
    return 2 + static_cast<std::int64_t>(qr_chunk) * threads + n;
}

// ---- phases: f(t) for thread t of T ----

LORAFLEET_HD void qr_phase_clear(int t, const qr_matrix& a) {
    if (t == 0) a.status[0] = a.status[1] = 0;
}

// w = double(a); flags non-finite input.
LORAFLEET_HD void qr_phase_widen(int t, int T, const qr_matrix& a) {
    bool bad = false;
    for (std::int64_t j = 0; j < a.n; ++j)
        for (std::int64_t i = t; i < a.m; i += T) {
            const double x = a.a[i + j * a.lda];
            bad = bad || !qr_fp::finite(x);
            a.w[i + j * a.m] = x;
        }
    if (bad) a.status[0] = 1;
}

// Thread t's partial sums for columns c0 .. c0 + width - 1: red[(c - c0) T + t] = sum over its rows
// i >= first of w(i, k) w(i, c), in increasing row order.
LORAFLEET_HD void qr_phase_dots(int t, int T, const qr_matrix& a, const qr_shared& s, std::int64_t k,
                                std::int64_t first, std::int64_t c0, int width) {
    double p[qr_chunk];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int c = 0; c < qr_chunk; ++c)
        p[c] = 0.0;
    const double* vk = a.w + k * a.m;
    for (std::int64_t i = first + t; i < a.m; i += T) {
        const double x = vk[i];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
        for (int c = 0; c < qr_chunk; ++c)
            if (c < width) p[c] = qr_fp::fma(x, a.w[i + (c0 + c) * a.m], p[c]);
    }
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int c = 0; c < qr_chunk; ++c)
        if (c < width) s.red[c * T + t] = p[c];
}

// One level of the fixed tree: red[c T + u] += red[c T + u + half] for u < half, every chunk column.
LORAFLEET_HD void qr_phase_tree(int t, int T, const qr_shared& s, int width, int half) {
    for (int q = t; q < width * half; q += T) {
        const int c = q / half, u = q % half;
        s.red[c * T + u] = qr_fp::add(s.red[c * T + u], s.red[c * T + u + half]);
    }
}

// The chunk's sums into col[c0 ..].
LORAFLEET_HD void qr_phase_take(int t, int T, const qr_shared& s, std::int64_t c0, int width) {
    for (int c = t; c < width; c += T)
        s.col[c0 + c] = s.red[c * T];
}

// dlarfg on column k (col[k] = x^T x) and the trailing coefficients: col[c] = tau v^T w(k:m, c) for c > k
// (col[c] held x^T w(k+1:m, c)). Every thread computes the scalars (the same bits); thread 0 stores them.
LORAFLEET_HD void qr_phase_reflector(int t, int T, const qr_matrix& a, const qr_shared& s, std::int64_t k) {
    const double alpha = a.w[k + k * a.m], xx = s.col[k];
    double beta = alpha, tau = 0.0, scale = 0.0;
    if (xx != 0.0) {
        beta = -qr_fp::copysign(qr_fp::sqrt(qr_fp::fma(alpha, alpha, xx)), alpha);
        tau = qr_fp::div(qr_fp::sub(beta, alpha), beta);
        scale = qr_fp::div(1.0, qr_fp::sub(alpha, beta));
    }
    for (std::int64_t c = k + 1 + t; c < a.n; c += T)
        s.col[c] = qr_fp::mul(tau, qr_fp::fma(scale, s.col[c], a.w[k + c * a.m]));
    if (t == 0) {
        a.tau[k] = tau;
        s.scal[0] = scale;
        s.scal[1] = beta;
    }
}

// H_k applied to w(k:m, k+1:n) (w(i, c) -= v_i col[c]); column k becomes (beta, v(2:)).
LORAFLEET_HD void qr_phase_apply(int t, int T, const qr_matrix& a, const qr_shared& s, std::int64_t k) {
    if (a.tau[k] == 0.0) return; // H = I: alpha and x stay
    const double scale = s.scal[0];
    for (std::int64_t i = k + t; i < a.m; i += T) {
        double v = 1.0;
        if (i == k) {
            a.w[k + k * a.m] = s.scal[1];
        } else {
            v = qr_fp::mul(a.w[i + k * a.m], scale);
            a.w[i + k * a.m] = v;
        }
        for (std::int64_t c = k + 1; c < a.n; ++c)
            a.w[i + c * a.m] = qr_fp::fma(-v, s.col[c], a.w[i + c * a.m]);
    }
}

// R = the upper triangle of w (fp32), zeros below; flags a non-finite result.
LORAFLEET_HD void qr_phase_store_r(int t, int T, const qr_matrix& a) {
    bool bad = false;
    for (std::int64_t j = 0; j < a.n; ++j)
        for (std::int64_t i = t; i < a.n; i += T) {
            const float v = i <= j ? qr_fp::narrow(a.w[i + j * a.m]) : 0.0f;
            bad = bad || !qr_fp::finite(v);
            a.r[i + j * a.n] = v;
        }
    if (bad) a.status[1] = 1;
}

// dorg2r step i, trailing coefficients: col[c] = tau_i v^T w(i:m, c) (col[c] held v(2:)^T w(i+1:m, c)).
LORAFLEET_HD void qr_phase_org_coefficients(int t, int T, const qr_matrix& a, const qr_shared& s,
                                            std::int64_t i) {
    const double tau = a.tau[i];
    for (std::int64_t c = i + 1 + t; c < a.n; c += T)
        s.col[c] = qr_fp::mul(tau, qr_fp::add(a.w[i + c * a.m], s.col[c]));
}

// dorg2r step i: H_i applied to w(i:m, i+1:n) when tau_i != 0, then column i = H_i e_i (rows < i zero).
LORAFLEET_HD void qr_phase_org_apply(int t, int T, const qr_matrix& a, const qr_shared& s, std::int64_t i) {
    const double tau = a.tau[i];
    const bool trailing = i + 1 < a.n && tau != 0.0;
    for (std::int64_t r = i + t; r < a.m; r += T) {
        const double v = r == i ? 1.0 : a.w[r + i * a.m];
        if (trailing)
            for (std::int64_t c = i + 1; c < a.n; ++c)
                a.w[r + c * a.m] = qr_fp::fma(-v, s.col[c], a.w[r + c * a.m]);
        a.w[r + i * a.m] = r == i ? qr_fp::sub(1.0, tau) : qr_fp::mul(-tau, v);
    }
    for (std::int64_t r = t; r < i; r += T)
        a.w[r + i * a.m] = 0.0;
}

// Q (fp32) into a; flags a non-finite result.
LORAFLEET_HD void qr_phase_store_q(int t, int T, const qr_matrix& a) {
    bool bad = false;
    for (std::int64_t j = 0; j < a.n; ++j)
        for (std::int64_t i = t; i < a.m; i += T) {
            const float v = qr_fp::narrow(a.w[i + j * a.m]);
            bad = bad || !qr_fp::finite(v);
            a.a[i + j * a.lda] = v;
        }
    if (bad) a.status[1] = 1;
}

// ---- the driver: the same sequence of phases on the device and in the host emulation ----

// col[c] for c in [from, n) = sum over rows i >= first of w(i, k) w(i, c) (partials, tree, take).
template <class Block>
LORAFLEET_HD void qr_column_dots(Block& b, const qr_matrix& a, const qr_shared& s, std::int64_t k,
                                 std::int64_t first, std::int64_t from) {
    const int T = b.threads();
    for (std::int64_t c0 = from; c0 < a.n; c0 += qr_chunk) {
        const int width = static_cast<int>(a.n - c0 < qr_chunk ? a.n - c0 : qr_chunk);
        b.phase([&](int t) { qr_phase_dots(t, T, a, s, k, first, c0, width); });
        for (int half = T / 2; half > 0; half /= 2)
            b.phase([&](int t) { qr_phase_tree(t, T, s, width, half); });
        b.phase([&](int t) { qr_phase_take(t, T, s, c0, width); });
    }
}

// Block: threads() = T (a power of two), phase(f) runs f(t) for t < T then a barrier. Control flow
// depends only on the shape and on tau values stored in an earlier phase, so it is uniform over the block.
template <class Block> LORAFLEET_HD void qr_householder(Block& b, const qr_matrix& a, const qr_shared& s) {
    const int T = b.threads();
    b.phase([&](int t) { qr_phase_clear(t, a); });
    b.phase([&](int t) { qr_phase_widen(t, T, a); });
    for (std::int64_t k = 0; k < a.n; ++k) { // dgeqr2
        qr_column_dots(b, a, s, k, k + 1, k);
        b.phase([&](int t) { qr_phase_reflector(t, T, a, s, k); });
        b.phase([&](int t) { qr_phase_apply(t, T, a, s, k); });
    }
    if (a.r != nullptr) b.phase([&](int t) { qr_phase_store_r(t, T, a); });
    for (std::int64_t i = a.n - 1; i >= 0; --i) { // dorg2r
        if (i + 1 < a.n && a.tau[i] != 0.0) {
            qr_column_dots(b, a, s, i, i + 1, i + 1);
            b.phase([&](int t) { qr_phase_org_coefficients(t, T, a, s, i); });
        }
        b.phase([&](int t) { qr_phase_org_apply(t, T, a, s, i); });
    }
    b.phase([&](int t) { qr_phase_store_q(t, T, a); });
}

// ---- host emulation ----

// The CPU's block: the threads of a phase one after another (a phase's threads touch disjoint outputs,
// so this order gives exactly what the device's concurrent threads give).
struct qr_host_block {
    int count = 1;
    LORAFLEET_HD int threads() const { return count; }
    template <class F> LORAFLEET_HD void phase(F&& f) const {
        for (int t = 0; t < count; ++t)
            f(t);
    }
};

// Status bits of a QR (qr_householder_host, and per matrix in qr_thin_many).
constexpr int qr_nonfinite_input = 1;
constexpr int qr_nonfinite_output = 2;

// The device's QR of one matrix on the CPU with `threads` emulated threads (a power of two, 1 .. 1024):
// a [m, n] (m >= n, leading dimension lda >= m) becomes Q, R [n, n] goes to r (leading dimension n) when
// not null. Returns 0 or the status bits (Q and R are then garbage). Bit-identical to qr_thin_many with
// the same thread count. Throws std::invalid_argument on a bad shape or thread count.
inline int qr_householder_host(std::int64_t m, std::int64_t n, float* a, std::int64_t lda, float* r,
                               int threads) {
    if (n < 0 || m < n || lda < (m > 1 ? m : 1))
        throw std::invalid_argument("qr_householder_host: needs m >= n >= 0 and lda >= m");
    if (threads < 1 || threads > 1024 || (threads & (threads - 1)) != 0)
        throw std::invalid_argument("qr_householder_host: threads must be a power of two in [1, 1024]");
    if (n == 0) return 0;
    std::vector<double> w(static_cast<std::size_t>(m * n)), tau(static_cast<std::size_t>(n)),
        shared(static_cast<std::size_t>(qr_shared_doubles(threads, n)));
    int status[2] = {0, 0};
    const qr_matrix mat{m, n, a, lda, r, w.data(), tau.data(), status};
    const qr_shared sh{shared.data(), shared.data() + 2, shared.data() + 2 + qr_chunk * threads};
    qr_host_block b{threads};
    qr_householder(b, mat, sh);
    return (status[0] != 0 ? qr_nonfinite_input : 0) | (status[1] != 0 ? qr_nonfinite_output : 0);
}

} // namespace lorafleet::kernels
