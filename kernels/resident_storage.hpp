// The compression cache's 16-bit storage on the device (engine/backend/cuda: modules kept resident across
// passes, issue 15 item 2): a module whose fp32 factors are all exactly representable in bf16 or fp16
// (kernels/half_elements.hpp: bf16_exact / fp16_exact) is cached narrowed to that format, half the bytes,
// and widened back to fp32 when it is selected again. Both directions are one element-wise kernel, a thin
// loop over store_element<E> / to_float (half_elements.hpp, tested on the CPU in tests/kernels_host), on
// the context's stream (enqueued, no wait). Narrowing a value that is not exact rounds it to nearest
// (the caller narrows only exact modules); widening is always exact. Errors: linalg_error (a build
// without CUDA links resident_storage_not_compiled.cpp, which throws "not compiled").
#pragma once

#include "kernels/half_elements.hpp"
#include "kernels/linalg_device.hpp"

#include <cstdint>

namespace lorafleet::kernels {

// dst[i] = store_element<E>(src[i]) for `count` elements, E = bf16 or fp16 (`to`; fp32 is a plain copy).
// dst holds count * element_bytes(to) bytes. Device to device.
void narrow_f32(linalg_context& ctx, const float* src, device_precision to, void* dst, std::int64_t count);
// dst[i] = to_float(src[i]) for `count` elements stored as `from`. Device to device.
void widen_to_f32(linalg_context& ctx, const void* src, device_precision from, float* dst,
                  std::int64_t count);

} // namespace lorafleet::kernels
