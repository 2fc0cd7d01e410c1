// Batched device linear algebra for the compression's lock-step fits (all clusters of a module at once,
// CompressBackend::fit_clusters): grouped GEMMs (every item its own shape and operands, as few library
// calls as the toolkit allows), batched symmetric eigen-solves in double, batched thin QRs (one kernel for
// all matrices: qr_batched.cu over householder_qr.hpp), and the few element-wise kernels around them
// (their per-element logic is in linalg_batched_elementwise.hpp, tested on the CPU).
// Everything enqueues on the context's stream (linalg_device.hpp) and returns the number of kernel /
// library launches it enqueued, so a caller can count launches per pass. Column-major, BLAS conventions;
// nothing here knows engine types. A build without CUDA links linalg_batched_not_compiled.cpp, where
// every entry throws linalg_error("not compiled"). Thread affinity: the context's. C++17.
#pragma once

#include "kernels/linalg_device.hpp"

#include <cstddef>
#include <cstdint>

namespace lorafleet::kernels {

// One product of a grouped GEMM: C = alpha op(A) op(B) + beta C, C [m, n], inner dimension k; device
// pointers. An item with m, n or k = 0 is skipped (k = 0 with beta = 0 still zeroes nothing: callers
// pre-zero such outputs).
struct gemm_item {
    std::int64_t m = 0, n = 0, k = 0;
    const float* a = nullptr;
    std::int64_t lda = 1;
    const float* b = nullptr;
    std::int64_t ldb = 1;
    float* c = nullptr;
    std::int64_t ldc = 1;
};
struct gemm_item_f64 {
    std::int64_t m = 0, n = 0, k = 0;
    const double* a = nullptr;
    std::int64_t lda = 1;
    const double* b = nullptr;
    std::int64_t ldb = 1;
    double* c = nullptr;
    std::int64_t ldc = 1;
};

// All `count` items (host array) with the same transposes and scalars: one cublas<S|D>gemmGroupedBatched
// over the items sorted into groups of equal shape (cuBLAS >= 12.5), else one cublas<S|D>gemmBatched per
// distinct shape. `scratch` (device, grown as needed) holds the pointer arrays, uploaded in one copy.
std::size_t gemm_grouped(linalg_context& ctx, mat_op ta, mat_op tb, float alpha, float beta,
                         const gemm_item* items, std::size_t count, device_buffer& scratch);
std::size_t gemm_grouped_f64(linalg_context& ctx, mat_op ta, mat_op tb, double alpha, double beta,
                             const gemm_item_f64* items, std::size_t count, device_buffer& scratch);

// `batch` symmetric [n, n] matrices packed at a + j n^2 (lower triangle read): eigenvalues ASCENDING into
// w + j n, eigenvectors into the columns of each matrix (cusolverDnXsyevBatched in double). Smaller
// problems are padded by the caller (pad_identity_f64) so that their padding sorts first. `work` (device)
// grows as needed. Waits for the info flags; throws linalg_error when any is non-zero.
std::size_t syev_batched_f64(linalg_context& ctx, std::int64_t n, double* a, double* w, std::int64_t batch,
                             device_buffer& work);

// For every j < batch (matrix j at a + j n^2, its used size sizes[j] <= n, `sizes` a device array):
// a(i, i) = pad for i >= sizes[j] (the off-diagonal padding must already be zero). With pad below every
// eigenvalue of the used block (pad = -1 for a PSD Gram) the padding's eigenpairs are unit vectors that
// sort first (ascending) and never mix with the used block's.
std::size_t pad_identity_f64(linalg_context& ctx, double* a, std::int64_t n, const std::int64_t* sizes,
                             std::int64_t batch, double pad);

// dst [d, cols] (leading dimension d) with dst(:, c) = src(:, index[c]) (src leading dimension d; index a
// device array of `cols` int64).
std::size_t gather_columns(linalg_context& ctx, const float* src, float* dst, std::int64_t d,
                           std::int64_t cols, const std::int64_t* index);

// The top-k eigenvectors in descending order from batched syev output: for every j < batch, columns
// c < k[j] of E_j [rows[j], k[j]] (leading dimension rows[j], packed at dst + dst_off[j]) are rows
// [0, rows[j]) of column n - 1 - c of matrix j (at vecs + j n^2). Device arrays: rows, k, dst_off.
std::size_t take_top_columns_f64(linalg_context& ctx, const double* vecs, std::int64_t n, std::int64_t batch,
                                 const std::int64_t* rows, const std::int64_t* k, const std::int64_t* dst_off,
                                 std::int64_t max_rows, std::int64_t max_k, double* dst);

// Thin QRs of several matrices in ONE kernel launch (qr_batched.cu: one thread block per matrix, the
// Householder QR of householder_qr.hpp — LAPACK's dgeqr2 + dorg2r in double on a double working copy,
// rounded to fp32 at the end; the CPU tests run the same functions through qr_householder_host and get
// the same bits for the same block size). Item j's a [m, n] (m >= n, leading dimension lda >= m) becomes
// Q, its R [n, n] (upper, zeros below, leading dimension n) goes to r when not null; items' shapes may
// differ. R's diagonal signs are LAPACK's (dlarfg's convention, as sgeqrf / sorgqr and qr_thin give);
// rank-deficient and zero columns still give an orthonormal Q. The item table, status flags, reflector
// scalars and the double working copies live in `work` (grown as needed; qr_thin_many_work_bytes says
// how much, so a caller can reserve it first). Uploads the table once, waits once at the end for the
// status flags, and throws linalg_error (code: householder_qr.hpp's status bits) naming the first matrix
// with NaN / Inf input or an R that overflows fp32. Items with n = 0 are skipped. At most 4094 columns
// per matrix (block-shared scratch). Returns the launches enqueued: 1 (0 when every item is empty).
struct qr_item {
    std::int64_t m = 0, n = 0;
    float* a = nullptr;
    std::int64_t lda = 1;
    float* r = nullptr;
};
std::size_t qr_thin_many_work_bytes(const qr_item* items, std::size_t count);
std::size_t qr_thin_many(linalg_context& ctx, const qr_item* items, std::size_t count, device_buffer& work);

} // namespace lorafleet::kernels
