// An adapter set resident on a device: the engine-side handle of a serving provider's "device twin"
// (serve/adapters/adapter_provider.hpp). Opaque above the backend layer: the serving code makes one
// through device_twin_factories.hpp, asks it to make slots resident, reads its counters, and hands it to
// the device forward pass; what it holds (a kernels device bank or device LoRA cache) is known only to
// engine/backend/cuda, which defines the concrete classes and the factories (device_twin_factories.hpp).
// Slots are the host provider's: a device twin answers for exactly the slots the provider numbered.
// Thread affinity: one thread (the serving engine's); the object belongs to the provider that made it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace lorafleet::backend {

struct device_adapter_counters {
    std::uint64_t capacity_bytes = 0; // device bytes for adapters (LoRA cache: pages x page size)
    std::uint64_t hits = 0;           // prepare() found the slot resident (LoRA cache; 0 for a bank)
    std::uint64_t misses = 0;         // prepare() copied it host -> device
};

class device_adapters {
public:
    virtual ~device_adapters() = default;
    // Makes `slots` resident in order and returns how many (a prefix), the AdapterProvider::prepare
    // contract. A bank twin holds everything: slots.size(). usage_error for an unknown slot; device_error
    // when the device fails.
    virtual std::size_t prepare(std::span<const int> slots) = 0;
    virtual device_adapter_counters counters() const = 0;
};

} // namespace lorafleet::backend
