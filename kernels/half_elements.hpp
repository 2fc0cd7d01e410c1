// The device's storage precisions and their element conversions, shared by every serving kernel and by
// the CPU tests that emulate them. Weights, the activations fed to the GEMMs, the KV cache and the bank's
// bases are STORED in the precision (bf16 by default); all math reads them into float and accumulates in
// float (tensor-core GEMMs with fp32 accumulation, attention and adapter dot products in fp32).
//   bf16: 1 sign, 8 exponent, 7 stored mantissa bits (precision p = 8): float's range, unit roundoff
//         u = 2^-8 — a round-to-nearest store x -> fl(x) has |fl(x) - x| <= 2^-8 |x|.
//   fp16: 1 sign, 5 exponent, 10 stored mantissa bits (p = 11), normal range [2^-14, 65504]: u = 2^-11 for
//         normals; subnormals have an absolute error <= 2^-25; |x| >= 65520 rounds to infinity.
//   fp32: storage is the float itself (the exactness mode: what the CPU engine computes).
// Stores round to nearest, ties to even, NaN stays NaN (quiet), +-inf stay inf — the IEEE conversions
// (__float2bfloat16_rn / __float2half_rn give the same bits). Written with integer operations only, so
// the host and the device run the very same code. The 16-bit types are distinct structs so a template
// over the element type picks the right conversion. Pure functions: any thread.
#pragma once

#include "kernels/serve_hd.hpp"

#include <cstring>

namespace lorafleet::kernels {

enum class device_precision : int { bf16 = 0, fp16 = 1, fp32 = 2 };

// Bytes of one stored element.
inline int element_bytes(device_precision p) {
    return p == device_precision::fp32 ? 4 : 2;
}
inline const char* precision_name(device_precision p) {
    return p == device_precision::bf16 ? "bf16" : p == device_precision::fp16 ? "fp16" : "fp32";
}

struct bf16_bits {
    unsigned short bits;
};
struct fp16_bits {
    unsigned short bits;
};

LORAFLEET_HD unsigned float_bits(float x) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(x);
#else
    unsigned u;
    std::memcpy(&u, &x, sizeof u);
    return u;
#endif
}

LORAFLEET_HD float bits_float(unsigned u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float x;
    std::memcpy(&x, &u, sizeof x);
    return x;
#endif
}

// ---- bf16 ----
LORAFLEET_HD bf16_bits bf16_from_float(float x) {
    const unsigned u = float_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return bf16_bits{static_cast<unsigned short>((u >> 16) | 0x0040u)};
    // Round to nearest even on the 16 dropped bits; a carry into the exponent is the right result
    // (also for the largest finite values, which round to infinity).
    const unsigned rounded = u + 0x7fffu + ((u >> 16) & 1u);
    return bf16_bits{static_cast<unsigned short>(rounded >> 16)};
}

LORAFLEET_HD float to_float(bf16_bits h) {
    return bits_float(unsigned(h.bits) << 16);
}

// ---- fp16 ----
LORAFLEET_HD fp16_bits fp16_from_float(float f) {
    const unsigned x = float_bits(f);
    const unsigned sign = (x >> 16) & 0x8000u;
    const unsigned a = x & 0x7fffffffu;
    if (a >= 0x7f800000u) // inf or NaN
        return fp16_bits{static_cast<unsigned short>(sign | (a > 0x7f800000u ? 0x7e00u : 0x7c00u))};
    if (a >= 0x477ff000u) // >= 65520: rounds to infinity
        return fp16_bits{static_cast<unsigned short>(sign | 0x7c00u)};
    if (a < 0x38800000u) { // below 2^-14: a subnormal k * 2^-24 (or zero)
        if (a < 0x33000000u) return fp16_bits{static_cast<unsigned short>(sign)}; // < 2^-25: to zero
        const unsigned e = a >> 23;                                               // 102..112
        const unsigned m = (a & 0x7fffffu) | 0x800000u;                           // value = m * 2^(e - 150)
        const unsigned shift = 126u - e;                                          // 14..24
        unsigned k = m >> shift;
        const unsigned rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (k & 1u))) ++k;
        return fp16_bits{static_cast<unsigned short>(sign | k)};
    }
    const unsigned rebased = a - 0x38000000u; // exponent bias 127 -> 15
    unsigned h = rebased >> 13;
    const unsigned rem = rebased & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h; // a carry into the exponent is right
    return fp16_bits{static_cast<unsigned short>(sign | h)};
}

LORAFLEET_HD float to_float(fp16_bits h) {
    const unsigned sign = (unsigned(h.bits) & 0x8000u) << 16;
    const unsigned e = (unsigned(h.bits) >> 10) & 0x1fu, m = unsigned(h.bits) & 0x3ffu;
    if (e == 0) { // zero or subnormal: m * 2^-24, exact in float
        const float v = float(m) * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
    return bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

// ---- float (fp32 storage) ----
LORAFLEET_HD float to_float(float x) {
    return x;
}

// The stored element of x for element type E (float, bf16_bits or fp16_bits).
template <class E> LORAFLEET_HD E store_element(float x);
template <> LORAFLEET_HD float store_element<float>(float x) {
    return x;
}
template <> LORAFLEET_HD bf16_bits store_element<bf16_bits>(float x) {
    return bf16_from_float(x);
}
template <> LORAFLEET_HD fp16_bits store_element<fp16_bits>(float x) {
    return fp16_from_float(x);
}

// x rounded through storage E: what a store then a load gives.
template <class E> LORAFLEET_HD float round_through(float x) {
    return to_float(store_element<E>(x));
}

// Whether a store of x in the format gives x back bit for bit (the exact storage tests of the compression
// cache, engine/backend/cuda/resident_modules.hpp): integer bit tests, equal to
// `round_through<E>(x) == x` with -0 kept, for every finite float. Non-finite values (inf, NaN) are never
// exact here: a factor holding one stays in fp32.
//   bf16: the 16 low bits of the float are zero (bf16 is float's top half).
//   fp16: |x| in [2^-14, 65504] with the 13 low mantissa bits zero (normals), or |x| < 2^-14 a multiple
//         of 2^-24 (zero and subnormals).
LORAFLEET_HD bool bf16_exact(float x) {
    const unsigned u = float_bits(x);
    return ((u & 0xffffu) == 0u) & ((u & 0x7f800000u) != 0x7f800000u);
}

LORAFLEET_HD bool fp16_exact(float x) {
    const unsigned a = float_bits(x) & 0x7fffffffu;
    // Normal range [2^-14, 65504]: the 13 low mantissa bits zero.
    const unsigned normal =
        unsigned(a - 0x38800000u <= 0x477fe000u - 0x38800000u) & unsigned((a & 0x1fffu) == 0u);
    // Below 2^-14 (zero, subnormals): |x| 2^24 an integer (at most 1024, so exact in float).
    const unsigned below = unsigned(a < 0x38800000u);
    const float scaled = bits_float(a & (0u - below)) * 16777216.0f;
    const unsigned on_grid = unsigned(scaled == float(int(scaled)));
    // Bitwise, no branch: a loop over these tests vectorizes.
    return ((below & on_grid) | ((below ^ 1u) & normal)) != 0u;
}

// Unit roundoff of a store in precision p (normal range): |fl(x) - x| <= u |x|.
inline double unit_roundoff(device_precision p) {
    return p == device_precision::bf16 ? 0x1p-8 : p == device_precision::fp16 ? 0x1p-11 : 0x1p-24;
}

} // namespace lorafleet::kernels
