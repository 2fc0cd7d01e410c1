// Thin device linear algebra for the compression backend: a context (one CUDA stream, a cuBLAS and a
// cuSOLVER handle, a byte budget for device memory), device buffers charged to that budget, host <->
// device copies through pinned staging buffers (double-buffered: packing chunk k+1 overlaps the DMA of
// chunk k), fp32 GEMM / strided-batched GEMM, a symmetric eigensolver (syevd), thin Householder QR
// (geqrf + orgqr) and the few element-wise kernels of linalg_elementwise.hpp. Everything is fp32 (plus
// an fp64 GEMM and eigensolver with widening / narrowing copies for the eigenproblems) and
// column-major (BLAS conventions: element (i, j) at p[i + j * ld]); nothing here knows engine types.
// Errors surface as linalg_error carrying the API ("cudaMalloc", "cublasSgemm", ...), its numeric code
// and message; a build without CUDA links linalg_not_compiled.cpp, where every entry throws
// linalg_error("not compiled"). Calls enqueue on the context's stream and return without waiting,
// except download(), synchronize() and the eigen/QR routines' info checks, which wait.
// Thread affinity: a context and its buffers are used by one thread at a time, except through an
// async_uploader (below). C++17 (nvcc compiles
// the .cu side with CUDA standard 17).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

namespace lorafleet::kernels {

// A CUDA / cuBLAS / cuSOLVER failure, an exhausted budget, or a build without CUDA.
class linalg_error : public std::runtime_error {
public:
    linalg_error(std::string api, long long code, const std::string& message);
    const std::string& api() const noexcept { return m_api; }
    long long code() const noexcept { return m_code; }
    const std::string& message() const noexcept { return m_message; } // without the api and code

private:
    std::string m_api;
    long long m_code = 0;
    std::string m_message;
};

// True when this build has the CUDA implementation (false: every call below throws linalg_error).
bool linalg_compiled();

enum class mat_op { n, t };
// Storage types the conversion kernel reads (fp32 compute everywhere).
enum class storage_type { f32, f16, bf16 };

struct linalg_context_state; // defined by the implementation

class linalg_context {
public:
    // `budget_bytes`: the most device memory the buffers of this context may hold at once (0 = 90% of
    // the device's free memory when the context is created). Throws linalg_error when the device,
    // stream or library handles cannot be created.
    explicit linalg_context(std::size_t budget_bytes = 0, int device = 0);
    ~linalg_context();
    linalg_context(const linalg_context&) = delete;
    linalg_context& operator=(const linalg_context&) = delete;

    std::size_t budget_bytes() const;
    std::size_t used_bytes() const;
    // Waits for everything enqueued on the stream; rethrows an asynchronous kernel error.
    void synchronize();

    linalg_context_state& state() { return *m_state; }

private:
    std::unique_ptr<linalg_context_state> m_state;
};

// Device memory charged to a context's budget (freed and uncharged on destruction). Move-only.
// Allocation beyond the budget throws linalg_error("budget", ...) naming the sizes.
class device_buffer {
public:
    device_buffer() = default;
    device_buffer(linalg_context& ctx, std::size_t bytes);
    ~device_buffer();
    device_buffer(device_buffer&& o) noexcept;
    device_buffer& operator=(device_buffer&& o) noexcept;
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;

    std::size_t bytes() const { return m_bytes; }
    void* data() const { return m_ptr; }
    float* f32() const { return static_cast<float*>(m_ptr); }
    // Grows (discarding the contents) when smaller than `bytes`; keeps the allocation otherwise.
    void reserve(linalg_context& ctx, std::size_t bytes);

private:
    void release() noexcept;
    linalg_context* m_ctx = nullptr;
    void* m_ptr = nullptr;
    std::size_t m_bytes = 0;
};

// A second stream with its own pinned staging buffers, for filling device buffers of a context from
// ANOTHER host thread while the context's stream computes (the compression backend uploads module m + 1
// during module m). Ordering with the context's stream is explicit and event-based:
//  - after_context(): this stream's later work waits for everything the context's stream has enqueued
//    so far (buffers being refilled may still be read there);
//  - finish(): marks the end of what has been enqueued here so far;
//  - context_waits(): the context's stream's later work waits for the last finish() mark.
// Thread affinity: an uploader is used by one thread at a time (callers serialize; it need not be the
// context's thread). Every call sets the context's device on the calling thread first. Charging
// device_buffer memory to a context's budget is thread-safe, so reserve() may run beside the context's
// own allocations.
struct async_uploader_state;

class async_uploader {
public:
    explicit async_uploader(linalg_context& ctx);
    ~async_uploader(); // waits for its stream
    async_uploader(const async_uploader&) = delete;
    async_uploader& operator=(const async_uploader&) = delete;

    void reserve(device_buffer& buffer, std::size_t bytes);
    // Host -> device on this stream; `host` may be reused when this returns.
    void upload(const void* host, void* device, std::size_t bytes);
    // gather_transposed_blocks (below) on this stream.
    void gather_transposed_blocks(const float* src, float* dst, std::int64_t d, std::int64_t cols,
                                  const std::int64_t* col_base, const std::int64_t* col_rank,
                                  const std::int64_t* col_local);
    void after_context();
    void finish();
    void context_waits();
    // Waits for everything enqueued here; rethrows an asynchronous error.
    void synchronize();

private:
    linalg_context& m_ctx;
    std::unique_ptr<async_uploader_state> m_state;
};

// Host -> device through the pinned staging buffers; `host` may be reused when this returns.
void upload(linalg_context& ctx, const void* host, void* device, std::size_t bytes);
// Device -> host; waits for the copy (and everything enqueued before it).
void download(linalg_context& ctx, const void* device, void* host, std::size_t bytes);
// Device -> device (asynchronous).
void copy_device(linalg_context& ctx, const void* src, void* dst, std::size_t bytes);
void fill_zero(linalg_context& ctx, void* device, std::size_t bytes);

// C = alpha op(A) op(B) + beta C with C [m, n], k the inner dimension (cublasSgemm).
void gemm(linalg_context& ctx, mat_op ta, mat_op tb, std::int64_t m, std::int64_t n, std::int64_t k,
          float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
          float* c, std::int64_t ldc);
// `batch` independent GEMMs, operand p of item j at p + j * stride_p (cublasSgemmStridedBatched).
void gemm_strided_batched(linalg_context& ctx, mat_op ta, mat_op tb, std::int64_t m, std::int64_t n,
                          std::int64_t k, float alpha, const float* a, std::int64_t lda,
                          std::int64_t stride_a, const float* b, std::int64_t ldb, std::int64_t stride_b,
                          float beta, float* c, std::int64_t ldc, std::int64_t stride_c, std::int64_t batch);
// All eigenpairs of the symmetric [n, n] matrix in `a` (lower triangle read): eigenvalues ASCENDING
// into `w` (device, n floats), eigenvectors into the columns of `a`. Throws when syevd reports info != 0.
void syevd(linalg_context& ctx, std::int64_t n, float* a, std::int64_t lda, float* w);
// fp64 counterparts for the compression's small eigenproblems and big Grams (an fp32 Gram squares the
// condition number and an fp32 eigensolver's vectors carry eps32 * ||G|| / gap errors; the host does the
// same steps in double, so both backends agree to fp32 rounding of their INPUTS, not of the solve):
// C = alpha op(A) op(B) + beta C in double (cublasDgemm), and syevd in double (cusolverDnDsyevd, same
// contract as syevd).
void gemm_f64(linalg_context& ctx, mat_op ta, mat_op tb, std::int64_t m, std::int64_t n, std::int64_t k,
              double alpha, const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
              double* c, std::int64_t ldc);
void syevd_f64(linalg_context& ctx, std::int64_t n, double* a, std::int64_t lda, double* w);
// Thin QR of `a` [m, n], m >= n: `a` becomes Q [m, n]; R [n, n] (upper, zeros below) goes to `r`
// (device, leading dimension n) when `r` is not null.
void qr_thin(linalg_context& ctx, std::int64_t m, std::int64_t n, float* a, std::int64_t lda, float* r);

// dst [d, cols] (leading dimension d) from blocks stored transposed: column c belongs to the block
// whose row-major [d, rank] data starts at src + col_base[c] (col_base, col_rank, col_local: device
// arrays of `cols` int64). See linalg_elementwise.hpp:block_transpose_source.
void gather_transposed_blocks(linalg_context& ctx, const float* src, float* dst, std::int64_t d,
                              std::int64_t cols, const std::int64_t* col_base, const std::int64_t* col_rank,
                              const std::int64_t* col_local);
// dst[i] = float(src[i]) for `count` elements stored as `type` (device to device).
void convert_to_f32(linalg_context& ctx, const void* src, storage_type type, float* dst, std::int64_t count);
// out[i] = sum of squares (in double) of src[i * block, (i + 1) * block) for i < count (out: device).
void block_sum_squares(linalg_context& ctx, const float* src, std::int64_t block, std::int64_t count,
                       double* out);
// Reverses the column order of a [rows, cols] matrix into dst (syevd's ascending -> descending).
void reverse_columns(linalg_context& ctx, const float* src, std::int64_t ld_src, float* dst,
                     std::int64_t ld_dst, std::int64_t rows, std::int64_t cols);
void reverse_columns_f64(linalg_context& ctx, const double* src, std::int64_t ld_src, double* dst,
                         std::int64_t ld_dst, std::int64_t rows, std::int64_t cols);
// dst[i] = widen(src[i]) (fp32 -> fp64, exact) / narrow(src[i]) (fp64 -> fp32, round to nearest) for
// `count` elements, device to device (linalg_elementwise.hpp).
void widen_to_f64(linalg_context& ctx, const float* src, double* dst, std::int64_t count);
void narrow_to_f32(linalg_context& ctx, const double* src, float* dst, std::int64_t count);

// The context's stream and library handles (cudaStream_t, cublasHandle_t, cusolverDnHandle_t) as opaque
// pointers, for sibling implementation files that enqueue on the same stream (linalg_batched.cu).
struct linalg_native_handles {
    void* stream = nullptr;
    void* blas = nullptr;
    void* solver = nullptr;
};
linalg_native_handles native_handles(linalg_context& ctx);

} // namespace lorafleet::kernels
