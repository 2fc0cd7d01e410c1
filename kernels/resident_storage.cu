// CUDA implementation of resident_storage.hpp: grid-stride loops over half_elements.hpp's conversions on
// the context's stream.
#include "kernels/half_elements.hpp"
#include "kernels/linalg_status.cuh"
#include "kernels/resident_storage.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>

namespace lorafleet::kernels {

namespace {

using detail::check_cuda;

unsigned blocks_for(std::int64_t n, unsigned threads) {
    const std::int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(std::min<std::int64_t>(std::max<std::int64_t>(b, 1), 65535 * 32));
}

template <class E> __global__ void narrow_kernel(const float* src, E* dst, std::int64_t count) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
         i += std::int64_t(gridDim.x) * blockDim.x)
        dst[i] = store_element<E>(src[i]);
}

template <class E> __global__ void widen_kernel(const E* src, float* dst, std::int64_t count) {
    for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < count;
         i += std::int64_t(gridDim.x) * blockDim.x)
        dst[i] = to_float(src[i]);
}

cudaStream_t stream_of(linalg_context& ctx) {
    return static_cast<cudaStream_t>(native_handles(ctx).stream);
}

} // namespace

void narrow_f32(linalg_context& ctx, const float* src, device_precision to, void* dst, std::int64_t count) {
    if (count <= 0) return;
    const auto st = stream_of(ctx);
    const unsigned blocks = blocks_for(count, 256);
    if (to == device_precision::bf16)
        narrow_kernel<<<blocks, 256, 0, st>>>(src, static_cast<bf16_bits*>(dst), count);
    else if (to == device_precision::fp16)
        narrow_kernel<<<blocks, 256, 0, st>>>(src, static_cast<fp16_bits*>(dst), count);
    else
        narrow_kernel<<<blocks, 256, 0, st>>>(src, static_cast<float*>(dst), count);
    check_cuda(cudaGetLastError(), "narrow_kernel");
}

void widen_to_f32(linalg_context& ctx, const void* src, device_precision from, float* dst,
                  std::int64_t count) {
    if (count <= 0) return;
    const auto st = stream_of(ctx);
    const unsigned blocks = blocks_for(count, 256);
    if (from == device_precision::bf16)
        widen_kernel<<<blocks, 256, 0, st>>>(static_cast<const bf16_bits*>(src), dst, count);
    else if (from == device_precision::fp16)
        widen_kernel<<<blocks, 256, 0, st>>>(static_cast<const fp16_bits*>(src), dst, count);
    else
        widen_kernel<<<blocks, 256, 0, st>>>(static_cast<const float*>(src), dst, count);
    check_cuda(cudaGetLastError(), "widen_kernel");
}

} // namespace lorafleet::kernels
