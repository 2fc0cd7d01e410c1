// AdapterProvider: an AdapterDelta that also owns a named, changeable set of adapters, so the serving
// engine can route requests by adapter name, add and remove adapters while running, and report memory.
// Two implementations: BankDelta (compressed bank, method.md §7: per cluster x·V_c, per-token Σ_i,
// ·U_cᵀ) and CachedLoraDelta (raw per-adapter A_i, B_i behind a byte-bounded LRU cache that loads
// misses from the mmapped PEFT files — the vLLM-style baseline).
// Optionally a device twin (the same slots on a CUDA device, see device_twin below).
// Threading: the serving engine calls every method from its own thread only (between forward steps);
// other threads read the engine's copies (serving_engine::adapters(), metrics()).
// Invariants: a slot stays bound to its adapter until remove(); slots are never reused for another
// name while requests may still reference them (the engine removes only idle adapters).
#pragma once

#include "engine/serve/adapter_delta.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::kernels {
class device_adapters; // kernels/serve_device_model.hpp
}

namespace lorafleet::serve {

struct adapter_info {
    std::string name;   // the adapter's folder name; what requests use in "model"
    int slot = -1;      // what the engine passes to AdapterDelta::apply
    std::string source; // folder it came from (may be empty)
    int cluster = -1;   // compressed mode; -1 in raw mode
    double error = std::numeric_limits<double>::quiet_NaN(); // mean squared relative error (compressed)
    std::uint64_t bytes = 0; // resident bytes this adapter costs (Σ_i for compressed, A+B for raw)
};

struct adapter_memory_stats {
    std::uint64_t resident_bytes = 0; // adapter weights held now (bases + cores, or cached A/B)
    std::uint64_t capacity_bytes = 0; // the cache budget in raw mode; == resident_bytes in compressed mode
    std::uint64_t hits = 0;           // raw mode: prepare() found the adapter resident
    std::uint64_t misses = 0;         // raw mode: prepare() had to load it
    std::uint64_t evictions = 0;
    int resident_adapters = 0;
};

class AdapterProvider : public AdapterDelta {
public:
    virtual std::string_view mode() const = 0;         // "compressed" or "raw"
    virtual int find(std::string_view name) const = 0; // slot, or -1 for an unknown name
    virtual std::vector<adapter_info> list() const = 0;

    // Before a forward step: `slots` are the distinct adapter slots the step wants, in priority order.
    // Makes as many of them resident as fit together and returns how many (a prefix of `slots`); the
    // step must only use those. Compressed mode: everything is resident, returns slots.size(). Throws
    // io_error / format_error when an adapter's files can no longer be read (the engine fails the
    // requests of that adapter and retries without it).
    virtual std::size_t prepare(std::span<const int> slots) = 0;

    // Adds a PEFT adapter folder under `name` (compressed mode: projected onto the best cluster's basis,
    // no refit). Throws validation_error / shape_mismatch for a bad or foreign adapter, usage_error when
    // the name is taken. Returns its info.
    virtual adapter_info add(const std::filesystem::path& peft_dir, const std::string& name) = 0;
    // Forgets an adapter; false when the name is unknown.
    virtual bool remove(std::string_view name) = 0;

    virtual adapter_memory_stats memory() const = 0;

    // Device twin, for serving on a CUDA device (forward_pass.hpp): the same adapters under the same
    // slots, as the kernels' device_adapters. has_device_twin: whether this provider can make one (the
    // default: no). device_twin: makes it on the first call (uploads; backend_unavailable when the device
    // refuses) and returns the same object afterwards; null when there is none. Once it exists, prepare()
    // makes slots resident on the device, and add() / remove() throw unsupported_error: changing the
    // adapter set is not mirrored on the device yet, and serving stale adapters is never an option.
    virtual bool has_device_twin() const { return false; }
    virtual kernels::device_adapters* device_twin() { return nullptr; }
};

} // namespace lorafleet::serve
