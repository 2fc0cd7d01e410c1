// The concrete device twins behind backend::device_adapters (device_adapters.hpp): a kernels::device_bank
// (cuda_bank.hpp) or a cuda_lora_cache (cuda_lora_cache.hpp), each able to hand the kernels' view to the
// device forward pass. Every device_adapters object is made by the factories in cuda_device_adapters.cpp,
// so kernel_view() is the one place the opaque handle turns back into a kernels type.
// Thread affinity: one thread (the serving engine's).
#pragma once

#include "engine/backend/device_adapters.hpp"
#include "kernels/serve_device_model.hpp"

namespace lorafleet::backend {

class cuda_device_adapters : public device_adapters {
public:
    virtual kernels::device_adapters* kernel_adapters() = 0;
};

// The kernels' view of `a` (null for null); usage_error when `a` was not made by this layer.
kernels::device_adapters* kernel_view(device_adapters* a);

} // namespace lorafleet::backend
