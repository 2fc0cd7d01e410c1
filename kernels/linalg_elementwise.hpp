// The per-element logic of the linear-algebra kernels (linalg_device.cu) as __host__ __device__
// functions, so the CPU unit tests (tests/kernels_host/test_linalg_elementwise.cpp) run exactly the
// code the GPU runs. Pure functions of their arguments; no state, any thread. C++17.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LORAFLEET_HD __host__ __device__
#else
#define LORAFLEET_HD
#endif

namespace lorafleet::kernels {

// Source index of element (row, local) of a block stored row-major [d, rank] at `base` (PEFT's
// lora_B layout): the gather writes it to column-major position (row, column) of the destination.
LORAFLEET_HD inline std::int64_t block_transpose_source(std::int64_t row, std::int64_t local,
                                                        std::int64_t base, std::int64_t rank) {
    return base + row * rank + local;
}

// Column `c` of a reversed [*, cols] matrix comes from column cols - 1 - c.
LORAFLEET_HD inline std::int64_t reversed_column(std::int64_t c, std::int64_t cols) {
    return cols - 1 - c;
}

// fp32 -> fp64 (exact: every float is a double) and fp64 -> fp32 (round to nearest even, the one IEEE
// rounding both the host and the device use for a narrowing conversion; overflow gives +-Inf, NaN
// stays NaN). The compression's eigenproblems run in double on a widened copy (widen_kernel) and come
// back as fp32 through narrow_kernel (linalg_device.cu).
LORAFLEET_HD inline double widen(float x) {
    return static_cast<double>(x);
}
LORAFLEET_HD inline float narrow(double x) {
    return static_cast<float>(x);
}

// sum_i p[i]^2 accumulated in double (one thread per block in block_sum_squares).
LORAFLEET_HD inline double sum_squares(const float* p, std::int64_t n) {
    double s = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
        s += static_cast<double>(p[i]) * static_cast<double>(p[i]);
    return s;
}

LORAFLEET_HD inline float bits_to_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
#endif
}

// bfloat16 -> float: the upper half of the float's bits (exact).
LORAFLEET_HD inline float bf16_bits_to_float(std::uint16_t h) {
    return bits_to_float(static_cast<std::uint32_t>(h) << 16);
}

// IEEE binary16 -> float (exact; subnormals normalized, Inf/NaN preserved with the NaN payload).
LORAFLEET_HD inline float f16_bits_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t man = h & 0x3ffu;
    if (exp == 0x1fu) return bits_to_float(sign | 0x7f800000u | (man << 13)); // Inf / NaN
    if (exp == 0) {
        if (man == 0) return bits_to_float(sign); // +-0
        // Subnormal: value man * 2^-24; shift the leading one into the implicit position.
        int e = -1;
        do {
            ++e;
            man <<= 1;
        } while ((man & 0x400u) == 0);
        man &= 0x3ffu;
        return bits_to_float(sign | (static_cast<std::uint32_t>(127 - 15 - e) << 23) | (man << 13));
    }
    return bits_to_float(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

} // namespace lorafleet::kernels
