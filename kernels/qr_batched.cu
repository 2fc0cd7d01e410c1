// kernels::qr_thin_many (linalg_batched.hpp): every matrix's thin QR in ONE kernel launch, one thread block
// per matrix running householder_qr.hpp's phases (the functions the CPU tests run through
// qr_householder_host), with the fp32 -> fp64 widening and the fp64 -> fp32 narrowing of Q and R fused in.
// The item table is uploaded once; each block's status flags are read back once, after the launch.
#include "kernels/householder_qr.hpp"
#include "kernels/linalg_batched.hpp"
#include "kernels/linalg_status.cuh"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <string>
#include <vector>

namespace lorafleet::kernels {

namespace {

// Threads per block (a power of two): 256 rows in flight per matrix, 16 KB of shared partial sums.
constexpr int qr_threads = qr_block_threads;
// The default dynamic shared memory limit (no opt-in needed).
constexpr std::size_t qr_shared_limit = 48 * 1024;

struct qr_cuda_block {
    __device__ int threads() const { return static_cast<int>(blockDim.x); }
    template <class F> __device__ void phase(F&& f) const {
        f(static_cast<int>(threadIdx.x));
        __syncthreads();
    }
};

__global__ void __launch_bounds__(qr_threads) householder_qr_kernel(const qr_matrix* items) {
    extern __shared__ double shared[];
    const qr_matrix a = items[blockIdx.x];
    const qr_shared s{shared, shared + 2, shared + 2 + qr_chunk * static_cast<int>(blockDim.x)};
    qr_cuda_block b;
    qr_householder(b, a, s);
}

std::size_t align256(std::size_t b) {
    return (b + 255) / 256 * 256;
}

// Byte offsets in the work buffer: [table | status (2 ints per live item) | tau | working copies].
struct qr_layout {
    std::vector<std::size_t> live; // indices of the items with n > 0
    std::size_t status_at = 0, tau_at = 0, w_at = 0, total = 0;
    std::int64_t max_n = 0;
};

qr_layout layout_of(const qr_item* items, std::size_t count) {
    qr_layout l;
    std::size_t taus = 0, ws = 0;
    for (std::size_t j = 0; j < count; ++j) {
        const auto& it = items[j];
        if (it.n < 0 || it.m < it.n) throw linalg_error("qr_thin_many", 0, "needs rows >= cols >= 0");
        if (it.n > 0 && it.lda < it.m)
            throw linalg_error("qr_thin_many", 0, "leading dimension below the row count");
        if (it.n == 0) continue;
        l.live.push_back(j);
        taus += static_cast<std::size_t>(it.n);
        ws += static_cast<std::size_t>(it.m * it.n);
        l.max_n = std::max(l.max_n, it.n);
    }
    l.status_at = align256(l.live.size() * sizeof(qr_matrix));
    l.tau_at = l.status_at + align256(2 * l.live.size() * sizeof(int));
    l.w_at = l.tau_at + align256(taus * sizeof(double));
    l.total = l.w_at + ws * sizeof(double);
    return l;
}

} // namespace

std::size_t qr_thin_many_work_bytes(const qr_item* items, std::size_t count) {
    return layout_of(items, count).total;
}

std::size_t qr_thin_many(linalg_context& ctx, const qr_item* items, std::size_t count, device_buffer& work) {
    const auto l = layout_of(items, count);
    if (l.live.empty()) return 0;
    const std::size_t shared_bytes =
        static_cast<std::size_t>(qr_shared_doubles(qr_threads, l.max_n)) * sizeof(double);
    if (shared_bytes > qr_shared_limit)
        throw linalg_error("qr_thin_many", 0,
                           "a matrix has " + std::to_string(l.max_n) +
                               " columns; the batched QR takes at most " +
                               std::to_string((qr_shared_limit / sizeof(double)) -
                                              static_cast<std::size_t>(qr_shared_doubles(qr_threads, 0))));
    if (l.live.size() > 0x7fffffffu) throw linalg_error("qr_thin_many", 0, "too many matrices");
    work.reserve(ctx, l.total);
    auto* base = static_cast<char*>(work.data());
    auto* status = reinterpret_cast<int*>(base + l.status_at);
    auto* tau = reinterpret_cast<double*>(base + l.tau_at);
    auto* w = reinterpret_cast<double*>(base + l.w_at);
    std::vector<qr_matrix> table(l.live.size());
    for (std::size_t b = 0; b < l.live.size(); ++b) {
        const auto& it = items[l.live[b]];
        table[b] = {it.m, it.n, it.a, it.lda, it.r, w, tau, status + 2 * b};
        w += it.m * it.n;
        tau += it.n;
    }
    upload(ctx, table.data(), base, table.size() * sizeof(qr_matrix));
    const auto stream = static_cast<cudaStream_t>(native_handles(ctx).stream);
    householder_qr_kernel<<<static_cast<unsigned>(l.live.size()), qr_threads, shared_bytes, stream>>>(
        reinterpret_cast<const qr_matrix*>(base));
    detail::check_cuda(cudaGetLastError(), "householder_qr_kernel");
    std::vector<int> flags(2 * l.live.size());
    download(ctx, status, flags.data(), flags.size() * sizeof(int)); // waits
    for (std::size_t b = 0; b < l.live.size(); ++b) {
        const int code =
            (flags[2 * b] != 0 ? qr_nonfinite_input : 0) | (flags[2 * b + 1] != 0 ? qr_nonfinite_output : 0);
        if (code != 0)
            throw linalg_error(
                "qr_thin_many", code,
                "matrix " + std::to_string(l.live[b]) + " of " + std::to_string(count) +
                    (code & qr_nonfinite_input ? ": NaN or Inf in the input" : ": R overflows fp32"));
    }
    return 1;
}

} // namespace lorafleet::kernels
