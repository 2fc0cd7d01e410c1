// widen_to_f32 (see weight_dtype.hpp): AVX2 (bf16: zero-extend and shift) and F16C (binary16:
// vcvtph2ps, exact, denormals included) when the CPU has them, engine/core/float16.hpp otherwise and for
// the tail. The choice is made once per process.
#include "engine/serve/model/weight_dtype.hpp"

#include "engine/core/float16.hpp"

#include <immintrin.h>

#include <cstring>

namespace lorafleet::serve {
namespace {

[[gnu::target("avx2")]] void bf16_avx2(const std::uint16_t* s, std::size_t n, float* d) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
        const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(d + i, _mm256_castsi256_ps(w));
    }
    for (; i < n; ++i)
        d[i] = bf16_to_f32(s[i]);
}

[[gnu::target("avx2,f16c")]] void f16_f16c(const std::uint16_t* s, std::size_t n, float* d) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
    for (; i < n; ++i)
        d[i] = f16_to_f32(s[i]);
}

struct cpu_features {
    bool avx2 = false, f16c = false;
    cpu_features() {
        __builtin_cpu_init();
        avx2 = __builtin_cpu_supports("avx2");
        f16c = avx2 && __builtin_cpu_supports("f16c");
    }
};

const cpu_features& features() {
    static const cpu_features f;
    return f;
}

} // namespace

std::string_view weight_dtype_name(weight_dtype t) {
    switch (t) {
    case weight_dtype::f32:
        return "float32";
    case weight_dtype::f16:
        return "float16";
    case weight_dtype::bf16:
        return "bfloat16";
    }
    return "?";
}

void widen_to_f32(const void* src, weight_dtype t, std::size_t count, float* dst) {
    if (count == 0) return;
    if (t == weight_dtype::f32) {
        std::memcpy(dst, src, count * sizeof(float));
        return;
    }
    const auto* s = static_cast<const std::uint16_t*>(src);
    const cpu_features& f = features();
    if (t == weight_dtype::bf16) {
        if (f.avx2) return bf16_avx2(s, count, dst);
        for (std::size_t i = 0; i < count; ++i)
            dst[i] = bf16_to_f32(s[i]);
    } else {
        if (f.f16c) return f16_f16c(s, count, dst);
        for (std::size_t i = 0; i < count; ++i)
            dst[i] = f16_to_f32(s[i]);
    }
}

} // namespace lorafleet::serve
