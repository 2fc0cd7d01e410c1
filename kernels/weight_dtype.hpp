// The dtype of a host weight tensor handed to the device layer (serve_device_model.hpp's sources): the
// checkpoint's own precision, read in place from the memory-mapped safetensors, so an upload never needs a
// whole-model float32 copy on the host. Conversions are the engine's (engine/core/float16.hpp: bf16 by a
// shift, IEEE binary16 exactly, float32 -> bf16 round to nearest even with NaN kept quiet), restated here
// because kernels/ includes nothing of the engine; tests/kernels_host/test_weight_dtype.cpp checks the two
// agree on every bit pattern. C++17, host and device (LORAFLEET_HD). Pure functions: any thread.
#pragma once

#include "kernels/serve_hd.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lorafleet::kernels {

enum weight_dtype_code : int { weight_f32 = 0, weight_f16 = 1, weight_bf16 = 2 };

// One host tensor as stored: `data` row-major elements of `dtype` (null where the tensor is absent).
struct weight_source {
    const void* data = nullptr;
    int dtype = weight_f32;
};

LORAFLEET_HD std::size_t weight_dtype_size(int dtype) {
    return dtype == weight_f32 ? 4 : 2;
}

LORAFLEET_HD float weight_bits_to_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
#endif
}

LORAFLEET_HD std::uint32_t weight_float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
#endif
}

LORAFLEET_HD float weight_bf16_to_f32(std::uint16_t h) {
    return weight_bits_to_float(std::uint32_t(h) << 16);
}

LORAFLEET_HD float weight_f16_to_f32(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return weight_bits_to_float(sign | 0x7f800000u | (mant << 13)); // Inf / NaN
    if (exp != 0) return weight_bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return weight_bits_to_float(sign); // +-0
    std::uint32_t e = 113;                            // subnormal: renormalise
    while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --e;
    }
    return weight_bits_to_float(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

// float32 -> bf16 bits, round to nearest even, NaN stays a (quiet) NaN.
LORAFLEET_HD std::uint16_t weight_f32_to_bf16(float f) {
    const std::uint32_t u = weight_float_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u);
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return std::uint16_t((u + rounding) >> 16);
}

// Element i of a stored tensor as float32 (exact for every dtype).
LORAFLEET_HD float weight_element(const void* data, int dtype, std::size_t i) {
    if (dtype == weight_f32) return static_cast<const float*>(data)[i];
    const std::uint16_t h = static_cast<const std::uint16_t*>(data)[i];
    return dtype == weight_bf16 ? weight_bf16_to_f32(h) : weight_f16_to_f32(h);
}

// dst[i] = element first + i of the tensor, i < count.
LORAFLEET_HD void weight_to_f32(const void* data, int dtype, std::size_t first, std::size_t count,
                                float* dst) {
    for (std::size_t i = 0; i < count; ++i)
        dst[i] = weight_element(data, dtype, first + i);
}

} // namespace lorafleet::kernels
