// CUDA implementation of linalg_device.hpp: runtime API + cuBLAS + cuSOLVER only (no CUB/Thrust, no
// driver API). Element logic comes from linalg_elementwise.hpp. Pinned staging: two buffers of
// kStagingBytes, each guarded by an event, so packing the next chunk overlaps the previous DMA.
#include "kernels/linalg_device.hpp"
#include "kernels/linalg_elementwise.hpp"
#include "kernels/linalg_status.cuh"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>

namespace lorafleet::kernels {

namespace {

constexpr std::size_t kStagingBytes = std::size_t(8) << 20;

using detail::check_cublas;
using detail::check_cuda;
using detail::check_cusolver;

cublasOperation_t to_cublas(mat_op o) {
    return o == mat_op::n ? CUBLAS_OP_N : CUBLAS_OP_T;
}

int as_int(std::int64_t v, const char* what) {
    if (v < 0 || v > 0x7fffffff)
        throw linalg_error(what, 0, "dimension " + std::to_string(v) + " out of int range");
    return static_cast<int>(v);
}

unsigned blocks_for(std::int64_t n, unsigned threads) {
    const std::int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(std::min<std::int64_t>(std::max<std::int64_t>(b, 1), 65535 * 32));
}

__global__ void gather_transposed_kernel(const float* src, float* dst, std::int64_t d, std::int64_t cols,
                                         const std::int64_t* col_base, const std::int64_t* col_rank,
                                         const std::int64_t* col_local) {
    const std::int64_t total = d * cols;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t row = idx % d, c = idx / d;
        dst[idx] = src[block_transpose_source(row, col_local[c], col_base[c], col_rank[c])];
    }
}

__global__ void convert_kernel(const void* src, int type, float* dst, std::int64_t count) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
         i += std::int64_t(gridDim.x) * blockDim.x) {
        if (type == 0)
            dst[i] = static_cast<const float*>(src)[i];
        else if (type == 1)
            dst[i] = f16_bits_to_float(static_cast<const std::uint16_t*>(src)[i]);
        else
            dst[i] = bf16_bits_to_float(static_cast<const std::uint16_t*>(src)[i]);
    }
}

template <class T>
__global__ void reverse_columns_kernel(const T* src, std::int64_t ld_src, T* dst, std::int64_t ld_dst,
                                       std::int64_t rows, std::int64_t cols) {
    const std::int64_t total = rows * cols;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t i = idx % rows, c = idx / rows;
        dst[i + c * ld_dst] = src[i + reversed_column(c, cols) * ld_src];
    }
}

__global__ void widen_kernel(const float* src, double* dst, std::int64_t count) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
         i += std::int64_t(gridDim.x) * blockDim.x)
        dst[i] = widen(src[i]);
}

__global__ void narrow_kernel(const double* src, float* dst, std::int64_t count) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
         i += std::int64_t(gridDim.x) * blockDim.x)
        dst[i] = narrow(src[i]);
}

__global__ void block_sum_squares_kernel(const float* src, std::int64_t block, std::int64_t count,
                                         double* out) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
         i += std::int64_t(gridDim.x) * blockDim.x)
        out[i] = sum_squares(src + i * block, block);
}

__global__ void upper_copy_kernel(const float* a, std::int64_t lda, float* r, std::int64_t n) {
    const std::int64_t total = n * n;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t i = idx % n, j = idx / n;
        r[idx] = i <= j ? a[i + j * lda] : 0.0f;
    }
}

} // namespace

linalg_error::linalg_error(std::string api, long long code, const std::string& message)
    : std::runtime_error(api + " failed (code " + std::to_string(code) + "): " + message),
      m_api(std::move(api)), m_code(code), m_message(message) {}

bool linalg_compiled() {
    return true;
}

struct linalg_context_state {
    int device = 0;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    cusolverDnHandle_t solver = nullptr;
    std::size_t budget = 0;
    std::mutex budget_mutex; // guards `used` (async_uploader charges buffers from another thread)
    std::size_t used = 0;
    void* staging[2] = {nullptr, nullptr};
    cudaEvent_t staged[2] = {nullptr, nullptr};
    int next_slot = 0;   // staging buffer the next upload chunk uses
    int* info = nullptr; // device int for cuSOLVER
    device_buffer work;  // cuSOLVER workspace (grown on demand)
};

void destroy_state(linalg_context_state& s) noexcept;

linalg_context::linalg_context(std::size_t budget_bytes, int device) : m_state(new linalg_context_state) {
    auto& s = *m_state;
    s.device = device;
    try {
        check_cuda(cudaSetDevice(device), "cudaSetDevice");
        check_cuda(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking), "cudaStreamCreate");
        check_cublas(cublasCreate(&s.blas), "cublasCreate");
        check_cublas(cublasSetStream(s.blas, s.stream), "cublasSetStream");
        check_cusolver(cusolverDnCreate(&s.solver), "cusolverDnCreate");
        check_cusolver(cusolverDnSetStream(s.solver, s.stream), "cusolverDnSetStream");
        for (int i = 0; i < 2; ++i) {
            check_cuda(cudaMallocHost(&s.staging[i], kStagingBytes), "cudaMallocHost");
            check_cuda(cudaEventCreateWithFlags(&s.staged[i], cudaEventDisableTiming), "cudaEventCreate");
        }
        check_cuda(cudaMalloc(reinterpret_cast<void**>(&s.info), sizeof(int)), "cudaMalloc");
        if (budget_bytes == 0) {
            std::size_t free_b = 0, total_b = 0;
            check_cuda(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
            budget_bytes = free_b / 10 * 9;
        }
        s.budget = budget_bytes;
    } catch (...) {
        destroy_state(s);
        throw;
    }
}

linalg_context::~linalg_context() {
    if (m_state) destroy_state(*m_state);
}

void destroy_state(linalg_context_state& s) noexcept {
    if (s.stream) cudaStreamSynchronize(s.stream);
    s.work = device_buffer();
    if (s.info) cudaFree(s.info);
    for (int i = 0; i < 2; ++i) {
        if (s.staged[i]) cudaEventDestroy(s.staged[i]);
        if (s.staging[i]) cudaFreeHost(s.staging[i]);
    }
    if (s.solver) cusolverDnDestroy(s.solver);
    if (s.blas) cublasDestroy(s.blas);
    if (s.stream) cudaStreamDestroy(s.stream);
    s.stream = nullptr;
    s.blas = nullptr;
    s.solver = nullptr;
    s.info = nullptr;
    for (int i = 0; i < 2; ++i) {
        s.staging[i] = nullptr;
        s.staged[i] = nullptr;
    }
}

std::size_t linalg_context::budget_bytes() const {
    return m_state->budget;
}
std::size_t linalg_context::used_bytes() const {
    std::lock_guard lk(m_state->budget_mutex);
    return m_state->used;
}
void linalg_context::synchronize() {
    check_cuda(cudaStreamSynchronize(m_state->stream), "cudaStreamSynchronize");
    check_cuda(cudaGetLastError(), "kernel launch");
}

device_buffer::device_buffer(linalg_context& ctx, std::size_t bytes) {
    reserve(ctx, bytes);
}

device_buffer::~device_buffer() {
    release();
}

device_buffer::device_buffer(device_buffer&& o) noexcept
    : m_ctx(o.m_ctx), m_ptr(o.m_ptr), m_bytes(o.m_bytes) {
    o.m_ctx = nullptr;
    o.m_ptr = nullptr;
    o.m_bytes = 0;
}

device_buffer& device_buffer::operator=(device_buffer&& o) noexcept {
    if (this != &o) {
        release();
        m_ctx = o.m_ctx;
        m_ptr = o.m_ptr;
        m_bytes = o.m_bytes;
        o.m_ctx = nullptr;
        o.m_ptr = nullptr;
        o.m_bytes = 0;
    }
    return *this;
}

void device_buffer::release() noexcept {
    if (m_ptr != nullptr && m_ctx != nullptr) {
        cudaStreamSynchronize(m_ctx->state().stream); // pending work may still read it
        cudaFree(m_ptr);
        std::lock_guard lk(m_ctx->state().budget_mutex);
        m_ctx->state().used -= m_bytes;
    }
    m_ptr = nullptr;
    m_bytes = 0;
}

void device_buffer::reserve(linalg_context& ctx, std::size_t bytes) {
    if (m_ptr != nullptr && m_bytes >= bytes && m_ctx == &ctx) return;
    release();
    m_ctx = &ctx;
    if (bytes == 0) return;
    auto& s = ctx.state();
    {
        // Charged before the allocation, so two threads cannot both pass the check.
        std::lock_guard lk(s.budget_mutex);
        if (s.used + bytes > s.budget)
            throw linalg_error("budget", 0,
                               "device memory budget of " + std::to_string(s.budget >> 20) +
                                   " MiB exceeded (" + std::to_string(s.used >> 20) + " MiB in use, " +
                                   std::to_string(bytes >> 20) +
                                   " MiB more requested); raise --gpu-memory-mb");
        s.used += bytes;
    }
    const cudaError_t e = cudaMalloc(&m_ptr, bytes);
    if (e != cudaSuccess) {
        m_ptr = nullptr;
        std::lock_guard lk(s.budget_mutex);
        s.used -= bytes;
    }
    check_cuda(e, "cudaMalloc");
    m_bytes = bytes;
}

namespace {

// Host -> device through two pinned buffers of kStagingBytes on `stream`: packing chunk k + 1 overlaps
// the DMA of chunk k; each buffer's event guards its reuse.
void staged_upload(cudaStream_t stream, void* const (&staging)[2], cudaEvent_t const (&staged)[2], int& slot,
                   const void* host, void* device, std::size_t bytes) {
    const auto* src = static_cast<const unsigned char*>(host);
    auto* dst = static_cast<unsigned char*>(device);
    std::size_t done = 0;
    while (done < bytes) {
        const std::size_t n = std::min(kStagingBytes, bytes - done);
        // The slot's previous DMA must be finished before it is overwritten.
        check_cuda(cudaEventSynchronize(staged[slot]), "cudaEventSynchronize");
        std::memcpy(staging[slot], src + done, n);
        check_cuda(cudaMemcpyAsync(dst + done, staging[slot], n, cudaMemcpyHostToDevice, stream),
                   "cudaMemcpyAsync");
        check_cuda(cudaEventRecord(staged[slot], stream), "cudaEventRecord");
        done += n;
        slot ^= 1;
    }
}

} // namespace

void upload(linalg_context& ctx, const void* host, void* device, std::size_t bytes) {
    auto& s = ctx.state();
    staged_upload(s.stream, s.staging, s.staged, s.next_slot, host, device, bytes);
}

// ---- async_uploader ----------------------------------------------------------------------------------
struct async_uploader_state {
    int device = 0;
    cudaStream_t stream = nullptr;
    void* staging[2] = {nullptr, nullptr};
    cudaEvent_t staged[2] = {nullptr, nullptr};
    int next_slot = 0;
    cudaEvent_t context_mark = nullptr; // after_context()
    cudaEvent_t done = nullptr;         // finish()

    ~async_uploader_state() {
        if (stream) cudaStreamSynchronize(stream);
        for (int i = 0; i < 2; ++i) {
            if (staged[i]) cudaEventDestroy(staged[i]);
            if (staging[i]) cudaFreeHost(staging[i]);
        }
        if (context_mark) cudaEventDestroy(context_mark);
        if (done) cudaEventDestroy(done);
        if (stream) cudaStreamDestroy(stream);
    }
};

async_uploader::async_uploader(linalg_context& ctx) : m_ctx(ctx), m_state(new async_uploader_state) {
    auto& u = *m_state;
    u.device = ctx.state().device;
    check_cuda(cudaSetDevice(u.device), "cudaSetDevice");
    check_cuda(cudaStreamCreateWithFlags(&u.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    for (int i = 0; i < 2; ++i) {
        check_cuda(cudaMallocHost(&u.staging[i], kStagingBytes), "cudaMallocHost");
        check_cuda(cudaEventCreateWithFlags(&u.staged[i], cudaEventDisableTiming), "cudaEventCreate");
    }
    check_cuda(cudaEventCreateWithFlags(&u.context_mark, cudaEventDisableTiming), "cudaEventCreate");
    check_cuda(cudaEventCreateWithFlags(&u.done, cudaEventDisableTiming), "cudaEventCreate");
}

async_uploader::~async_uploader() = default;

void async_uploader::reserve(device_buffer& buffer, std::size_t bytes) {
    check_cuda(cudaSetDevice(m_state->device), "cudaSetDevice");
    buffer.reserve(m_ctx, bytes);
}

void async_uploader::upload(const void* host, void* device, std::size_t bytes) {
    auto& u = *m_state;
    check_cuda(cudaSetDevice(u.device), "cudaSetDevice");
    staged_upload(u.stream, u.staging, u.staged, u.next_slot, host, device, bytes);
}

void async_uploader::gather_transposed_blocks(const float* src, float* dst, std::int64_t d, std::int64_t cols,
                                              const std::int64_t* col_base, const std::int64_t* col_rank,
                                              const std::int64_t* col_local) {
    if (d * cols == 0) return;
    check_cuda(cudaSetDevice(m_state->device), "cudaSetDevice");
    gather_transposed_kernel<<<blocks_for(d * cols, 256), 256, 0, m_state->stream>>>(
        src, dst, d, cols, col_base, col_rank, col_local);
    check_cuda(cudaGetLastError(), "gather_transposed_kernel");
}

void async_uploader::after_context() {
    auto& u = *m_state;
    check_cuda(cudaSetDevice(u.device), "cudaSetDevice");
    check_cuda(cudaEventRecord(u.context_mark, m_ctx.state().stream), "cudaEventRecord");
    check_cuda(cudaStreamWaitEvent(u.stream, u.context_mark, 0), "cudaStreamWaitEvent");
}

void async_uploader::finish() {
    check_cuda(cudaSetDevice(m_state->device), "cudaSetDevice");
    check_cuda(cudaEventRecord(m_state->done, m_state->stream), "cudaEventRecord");
}

void async_uploader::context_waits() {
    check_cuda(cudaSetDevice(m_state->device), "cudaSetDevice");
    check_cuda(cudaStreamWaitEvent(m_ctx.state().stream, m_state->done, 0), "cudaStreamWaitEvent");
}

void async_uploader::synchronize() {
    check_cuda(cudaSetDevice(m_state->device), "cudaSetDevice");
    check_cuda(cudaStreamSynchronize(m_state->stream), "cudaStreamSynchronize");
    check_cuda(cudaGetLastError(), "kernel launch");
}

void download(linalg_context& ctx, const void* device, void* host, std::size_t bytes) {
    auto& s = ctx.state();
    auto* dst = static_cast<unsigned char*>(host);
    const auto* src = static_cast<const unsigned char*>(device);
    std::size_t done = 0;
    while (done < bytes) {
        const std::size_t n = std::min(kStagingBytes, bytes - done);
        check_cuda(cudaMemcpyAsync(s.staging[0], src + done, n, cudaMemcpyDeviceToHost, s.stream),
                   "cudaMemcpyAsync");
        check_cuda(cudaStreamSynchronize(s.stream), "cudaStreamSynchronize");
        std::memcpy(dst + done, s.staging[0], n);
        done += n;
    }
    if (bytes == 0) ctx.synchronize();
}

void copy_device(linalg_context& ctx, const void* src, void* dst, std::size_t bytes) {
    if (bytes == 0) return;
    check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx.state().stream),
               "cudaMemcpyAsync");
}

void fill_zero(linalg_context& ctx, void* device, std::size_t bytes) {
    if (bytes == 0) return;
    check_cuda(cudaMemsetAsync(device, 0, bytes, ctx.state().stream), "cudaMemsetAsync");
}

void gemm(linalg_context& ctx, mat_op ta, mat_op tb, std::int64_t m, std::int64_t n, std::int64_t k,
          float alpha, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
          float* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    check_cublas(cublasSgemm(ctx.state().blas, to_cublas(ta), to_cublas(tb), as_int(m, "gemm"),
                             as_int(n, "gemm"), as_int(k, "gemm"), &alpha, a,
                             as_int(std::max<std::int64_t>(lda, 1), "gemm"), b,
                             as_int(std::max<std::int64_t>(ldb, 1), "gemm"), &beta, c,
                             as_int(std::max<std::int64_t>(ldc, 1), "gemm")),
                 "cublasSgemm");
}

void gemm_strided_batched(linalg_context& ctx, mat_op ta, mat_op tb, std::int64_t m, std::int64_t n,
                          std::int64_t k, float alpha, const float* a, std::int64_t lda,
                          std::int64_t stride_a, const float* b, std::int64_t ldb, std::int64_t stride_b,
                          float beta, float* c, std::int64_t ldc, std::int64_t stride_c, std::int64_t batch) {
    if (m == 0 || n == 0 || batch == 0) return;
    check_cublas(cublasSgemmStridedBatched(
                     ctx.state().blas, to_cublas(ta), to_cublas(tb), as_int(m, "gemm"), as_int(n, "gemm"),
                     as_int(k, "gemm"), &alpha, a, as_int(std::max<std::int64_t>(lda, 1), "gemm"), stride_a,
                     b, as_int(std::max<std::int64_t>(ldb, 1), "gemm"), stride_b, &beta, c,
                     as_int(std::max<std::int64_t>(ldc, 1), "gemm"), stride_c, as_int(batch, "gemm")),
                 "cublasSgemmStridedBatched");
}

void gemm_f64(linalg_context& ctx, mat_op ta, mat_op tb, std::int64_t m, std::int64_t n, std::int64_t k,
              double alpha, const double* a, std::int64_t lda, const double* b, std::int64_t ldb, double beta,
              double* c, std::int64_t ldc) {
    if (m == 0 || n == 0) return;
    check_cublas(cublasDgemm(ctx.state().blas, to_cublas(ta), to_cublas(tb), as_int(m, "gemm"),
                             as_int(n, "gemm"), as_int(k, "gemm"), &alpha, a,
                             as_int(std::max<std::int64_t>(lda, 1), "gemm"), b,
                             as_int(std::max<std::int64_t>(ldb, 1), "gemm"), &beta, c,
                             as_int(std::max<std::int64_t>(ldc, 1), "gemm")),
                 "cublasDgemm");
}

namespace {

void check_info(linalg_context& ctx, const char* api) {
    int info = 0;
    check_cuda(
        cudaMemcpyAsync(&info, ctx.state().info, sizeof info, cudaMemcpyDeviceToHost, ctx.state().stream),
        "cudaMemcpyAsync");
    ctx.synchronize();
    if (info != 0) throw linalg_error(api, info, "info = " + std::to_string(info));
}

float* workspace(linalg_context& ctx, int floats) {
    auto& s = ctx.state();
    s.work.reserve(ctx, static_cast<std::size_t>(std::max(floats, 1)) * sizeof(float));
    return s.work.f32();
}

double* workspace_f64(linalg_context& ctx, int doubles) {
    auto& s = ctx.state();
    s.work.reserve(ctx, static_cast<std::size_t>(std::max(doubles, 1)) * sizeof(double));
    return static_cast<double*>(s.work.data());
}

} // namespace

void syevd(linalg_context& ctx, std::int64_t n, float* a, std::int64_t lda, float* w) {
    auto& s = ctx.state();
    const int nn = as_int(n, "syevd"), ld = as_int(std::max<std::int64_t>(lda, 1), "syevd");
    int lwork = 0;
    check_cusolver(cusolverDnSsyevd_bufferSize(s.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, nn,
                                               a, ld, w, &lwork),
                   "cusolverDnSsyevd_bufferSize");
    float* work = workspace(ctx, lwork);
    check_cusolver(cusolverDnSsyevd(s.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, nn, a, ld, w,
                                    work, lwork, s.info),
                   "cusolverDnSsyevd");
    check_info(ctx, "cusolverDnSsyevd");
}

void syevd_f64(linalg_context& ctx, std::int64_t n, double* a, std::int64_t lda, double* w) {
    auto& s = ctx.state();
    const int nn = as_int(n, "syevd"), ld = as_int(std::max<std::int64_t>(lda, 1), "syevd");
    if (nn == 0) return;
    int lwork = 0;
    check_cusolver(cusolverDnDsyevd_bufferSize(s.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, nn,
                                               a, ld, w, &lwork),
                   "cusolverDnDsyevd_bufferSize");
    double* work = workspace_f64(ctx, lwork);
    check_cusolver(cusolverDnDsyevd(s.solver, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, nn, a, ld, w,
                                    work, lwork, s.info),
                   "cusolverDnDsyevd");
    check_info(ctx, "cusolverDnDsyevd");
}

void qr_thin(linalg_context& ctx, std::int64_t m, std::int64_t n, float* a, std::int64_t lda, float* r) {
    auto& s = ctx.state();
    if (m < n) throw linalg_error("qr_thin", 0, "needs rows >= cols");
    const int mm = as_int(m, "qr"), nn = as_int(n, "qr"), ld = as_int(std::max<std::int64_t>(lda, 1), "qr");
    if (nn == 0) return;
    device_buffer tau(ctx, static_cast<std::size_t>(nn) * sizeof(float));
    int l1 = 0, l2 = 0;
    check_cusolver(cusolverDnSgeqrf_bufferSize(s.solver, mm, nn, a, ld, &l1), "cusolverDnSgeqrf_bufferSize");
    check_cusolver(cusolverDnSorgqr_bufferSize(s.solver, mm, nn, nn, a, ld, tau.f32(), &l2),
                   "cusolverDnSorgqr_bufferSize");
    const int lwork = std::max(l1, l2);
    float* work = workspace(ctx, lwork);
    check_cusolver(cusolverDnSgeqrf(s.solver, mm, nn, a, ld, tau.f32(), work, lwork, s.info),
                   "cusolverDnSgeqrf");
    check_info(ctx, "cusolverDnSgeqrf");
    if (r != nullptr) upper_copy_kernel<<<blocks_for(n * n, 256), 256, 0, s.stream>>>(a, lda, r, n);
    check_cusolver(cusolverDnSorgqr(s.solver, mm, nn, nn, a, ld, tau.f32(), work, lwork, s.info),
                   "cusolverDnSorgqr");
    check_info(ctx, "cusolverDnSorgqr");
}

void gather_transposed_blocks(linalg_context& ctx, const float* src, float* dst, std::int64_t d,
                              std::int64_t cols, const std::int64_t* col_base, const std::int64_t* col_rank,
                              const std::int64_t* col_local) {
    if (d * cols == 0) return;
    gather_transposed_kernel<<<blocks_for(d * cols, 256), 256, 0, ctx.state().stream>>>(
        src, dst, d, cols, col_base, col_rank, col_local);
    check_cuda(cudaGetLastError(), "gather_transposed_kernel");
}

void convert_to_f32(linalg_context& ctx, const void* src, storage_type type, float* dst, std::int64_t count) {
    if (count == 0) return;
    const int t = type == storage_type::f32 ? 0 : type == storage_type::f16 ? 1 : 2;
    convert_kernel<<<blocks_for(count, 256), 256, 0, ctx.state().stream>>>(src, t, dst, count);
    check_cuda(cudaGetLastError(), "convert_kernel");
}

void block_sum_squares(linalg_context& ctx, const float* src, std::int64_t block, std::int64_t count,
                       double* out) {
    if (count == 0) return;
    block_sum_squares_kernel<<<blocks_for(count, 128), 128, 0, ctx.state().stream>>>(src, block, count, out);
    check_cuda(cudaGetLastError(), "block_sum_squares_kernel");
}

void reverse_columns(linalg_context& ctx, const float* src, std::int64_t ld_src, float* dst,
                     std::int64_t ld_dst, std::int64_t rows, std::int64_t cols) {
    if (rows * cols == 0) return;
    reverse_columns_kernel<<<blocks_for(rows * cols, 256), 256, 0, ctx.state().stream>>>(src, ld_src, dst,
                                                                                         ld_dst, rows, cols);
    check_cuda(cudaGetLastError(), "reverse_columns_kernel");
}

void reverse_columns_f64(linalg_context& ctx, const double* src, std::int64_t ld_src, double* dst,
                         std::int64_t ld_dst, std::int64_t rows, std::int64_t cols) {
    if (rows * cols == 0) return;
    reverse_columns_kernel<<<blocks_for(rows * cols, 256), 256, 0, ctx.state().stream>>>(src, ld_src, dst,
                                                                                         ld_dst, rows, cols);
    check_cuda(cudaGetLastError(), "reverse_columns_kernel");
}

void widen_to_f64(linalg_context& ctx, const float* src, double* dst, std::int64_t count) {
    if (count == 0) return;
    widen_kernel<<<blocks_for(count, 256), 256, 0, ctx.state().stream>>>(src, dst, count);
    check_cuda(cudaGetLastError(), "widen_kernel");
}

void narrow_to_f32(linalg_context& ctx, const double* src, float* dst, std::int64_t count) {
    if (count == 0) return;
    narrow_kernel<<<blocks_for(count, 256), 256, 0, ctx.state().stream>>>(src, dst, count);
    check_cuda(cudaGetLastError(), "narrow_kernel");
}

linalg_native_handles native_handles(linalg_context& ctx) {
    auto& s = ctx.state();
    return {s.stream, s.blas, s.solver};
}

} // namespace lorafleet::kernels
