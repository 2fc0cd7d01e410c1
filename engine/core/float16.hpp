// IEEE binary16 and bfloat16 <-> float32 conversion (round to nearest even, NaN/Inf preserved).
// Header-only and branch-light so the CUDA backend can reuse the same definitions in host code.
#pragma once

#include <bit>
#include <cstdint>

namespace lorafleet {

constexpr float bf16_to_f32(std::uint16_t h) {
    return std::bit_cast<float>(std::uint32_t(h) << 16);
}

constexpr std::uint16_t f32_to_bf16(float f) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x40u); // quiet NaN
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return std::uint16_t((u + rounding) >> 16);
}

constexpr float f16_to_f32(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13)); // Inf / NaN
    if (exp != 0) return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return std::bit_cast<float>(sign); // +-0
    // subnormal: renormalise
    std::uint32_t e = 113;
    while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --e;
    }
    return std::bit_cast<float>(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

constexpr std::uint16_t f32_to_f16(float f) {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);  // NaN
    if (absu >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u); // overflow (after rounding) -> Inf
    if (absu < 0x38800000u) {                                      // subnormal or zero in f16
        if (absu < 0x33000000u) return std::uint16_t(sign);        // below half the smallest subnormal
        const std::uint32_t exp = absu >> 23;
        const std::uint32_t mant = (absu & 0x7fffffu) | 0x800000u;
        const std::uint32_t shift = 126u - exp; // 14..24
        std::uint32_t r = mant >> shift;
        const std::uint32_t rem = mant & ((1u << shift) - 1u);
        const std::uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (r & 1u))) ++r;
        return std::uint16_t(sign | r);
    }
    std::uint32_t v = absu - 0x38000000u; // rebias exponent 127 -> 15
    v += 0xfffu + ((v >> 13) & 1u);       // round to nearest even
    return std::uint16_t(sign | (v >> 13));
}

} // namespace lorafleet
