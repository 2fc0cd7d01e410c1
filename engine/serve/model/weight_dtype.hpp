// The precision a base-model weight tensor is held in: the checkpoint's own (float32, IEEE binary16 or
// bfloat16), used in place from the memory-mapped safetensors. The forward pass computes in float32; 16-bit
// weights are widened as they are read (gemm.cpp packs a few rows at a time), so a model needs its
// checkpoint's bytes of RAM, not twice that. widen_to_f32 is exact for every dtype (bf16 by a shift,
// binary16 with F16C when the CPU has it: the same floats as engine/core/float16.hpp). Any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace lorafleet::serve {

enum class weight_dtype : std::uint8_t { f32, f16, bf16 };

constexpr std::size_t weight_dtype_size(weight_dtype t) {
    return t == weight_dtype::f32 ? 4 : 2;
}
std::string_view weight_dtype_name(weight_dtype t); // "float32", "float16", "bfloat16"

// dst[i] = element i of `count` consecutive stored elements at `src`, as float32.
void widen_to_f32(const void* src, weight_dtype t, std::size_t count, float* dst);

} // namespace lorafleet::serve
