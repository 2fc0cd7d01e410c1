// AdapterProvider: an AdapterDelta that also owns a named, changeable set of adapters, so the serving
// engine can route requests by adapter name, add and remove adapters while running, and report memory.
// Two implementations: BankDelta (compressed bank, method.md §7: per cluster x·V_c, per-token Σ_i,
// ·U_cᵀ) and CachedLoraDelta (raw per-adapter A_i, B_i behind a byte-bounded LRU cache that loads
// misses from the mmapped PEFT files — the vLLM-style baseline).
// Optionally a device twin (the same slots on a CUDA device, see device_twin below).
// Threading: the serving engine calls every method from its own thread only (between forward steps),
// except prepare_add(), which its loader thread runs while the engine thread keeps serving; other threads
// read the engine's copies (serving_engine::adapters(), metrics()).
// Invariants: a slot stays bound to its adapter until remove(); remove() frees the slot and a later
// install() reuses the lowest free slot, so the slot count stays bounded by the most adapters live at
// once. Reuse is safe because requests only get slots through the engine's name table, and the engine
// fails or cancels every queued and running request of an adapter (and drops its name) on its own thread
// before it calls remove(): when install() hands the slot to a new adapter, nothing refers to the old one.
#pragma once

#include "engine/backend/device_adapters.hpp"
#include "engine/serve/adapters/adapter_delta.hpp"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

struct adapter_info {
    std::string name;   // the adapter's folder name; what requests use in "model"
    int slot = -1;      // what the engine passes to AdapterDelta::apply
    std::string source; // folder it came from (may be empty)
    int cluster = -1;   // compressed mode; -1 in raw mode
    double error = std::numeric_limits<double>::quiet_NaN(); // mean squared relative error (compressed)
    std::uint64_t bytes = 0; // resident bytes this adapter costs (Σ_i for compressed, A+B for raw)
    std::string serving;     // the path that serves it, "compressed" or "raw"; empty: the provider's mode()
};

struct adapter_memory_stats {
    std::uint64_t resident_bytes = 0; // adapter weights held now (bases + cores, or cached A/B)
    std::uint64_t capacity_bytes = 0; // the cache budget in raw mode; == resident_bytes in compressed mode
    std::uint64_t hits = 0;           // raw mode: prepare() found the adapter resident
    std::uint64_t misses = 0;         // raw mode: prepare() had to load it
    std::uint64_t evictions = 0;
    int resident_adapters = 0;
};

// An adapter read, validated against the base and (compressed mode) projected by prepare_add(), owned and
// ready for install(): everything slow is done. Each provider installs only its own kind.
class prepared_adapter {
public:
    virtual ~prepared_adapter() = default;
    std::string name;
    std::string source; // the folder it came from
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

    // Adding a PEFT adapter folder under `name` (compressed mode: projected onto the best cluster's basis,
    // no refit), in two halves so that the slow one never runs on the engine thread:
    // prepare_add: any thread, concurrently with every other method (another prepare_add included); reads
    // the folder and only provider state fixed at construction (base geometry, bank bases), mutates
    // nothing shared. Throws validation_error / shape_mismatch for a bad or foreign adapter,
    // format_error / io_error for unreadable files, usage_error for an empty name.
    virtual std::unique_ptr<prepared_adapter> prepare_add(const std::filesystem::path& peft_dir,
                                                          const std::string& name) const = 0;
    // install: the engine thread; cheap (moves the prepared data into a slot, no I/O). usage_error when
    // the name was taken meanwhile, unsupported_error once a device twin exists. Returns its info.
    virtual adapter_info install(std::unique_ptr<prepared_adapter> prepared) = 0;
    // Both halves on the calling thread.
    adapter_info add(const std::filesystem::path& peft_dir, const std::string& name) {
        return install(prepare_add(peft_dir, name));
    }
    // Forgets an adapter; false when the name is unknown.
    virtual bool remove(std::string_view name) = 0;

    virtual adapter_memory_stats memory() const = 0;

    // Device twin, for serving on a CUDA device (forward_pass.hpp): the same adapters under the same
    // slots, as an opaque backend::device_adapters (backend/device_adapters.hpp). has_device_twin:
    // whether this provider can make one (the default: no). device_twin: makes it on the first call (uploads;
    // backend_unavailable when the device refuses) and returns the same object afterwards; null when there is
    // none. Once it exists, prepare() makes slots resident on the device, and add() / remove() throw
    // unsupported_error: changing the adapter set is not mirrored on the device yet, and serving stale
    // adapters is never an option.
    virtual bool has_device_twin() const { return false; }
    virtual backend::device_adapters* device_twin() { return nullptr; }
};

} // namespace lorafleet::serve
