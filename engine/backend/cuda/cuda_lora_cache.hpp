// The raw multi-LoRA baseline on the device: PEFT adapters (memory-mapped, as CachedLoraDelta holds them)
// served through kernels::device_lora_cache, a bounded LRU cache of device pages (one adapter per page,
// page = the largest adapter's factors), filled host -> device on a miss with A and s·B computed in float32
// (peft_module::factors_f32, the same numbers CachedLoraDelta computes with) and stored in the device
// precision (bf16 by default: half a float32 page; fp32 keeps them exact). Slots are indices into the
// adapter list, as CachedLoraDelta numbers its registrations. prepare() has CachedLoraDelta's contract
// (a resident prefix of the asked slots, evicting least recently prepared pages the call does not need);
// device() is what cuda_transformer::forward takes. Not thread-safe: one thread (the serving thread).
#pragma once

#include "engine/io/fleet.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/io/peft_adapter.hpp"
#include "kernels/serve_device_model.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace lorafleet::serve {

class cuda_lora_cache {
public:
    // `adapters` may hold nulls (slots removed before the cache was made: never prepared).
    // validation_error when not even one page fits `cache_bytes` or an adapter's module is not a decoder
    // linear of `base`; backend_unavailable when the device refuses.
    cuda_lora_cache(const io::model_geometry& base, io::fleet adapters, std::uint64_t cache_bytes,
                    kernels::device_precision precision = kernels::device_precision::bf16);
    cuda_lora_cache(const cuda_lora_cache&) = delete;
    cuda_lora_cache& operator=(const cuda_lora_cache&) = delete;

    // Makes slots resident in order; returns how many (a prefix). usage_error for an unknown slot.
    std::size_t prepare(std::span<const int> slots);
    kernels::device_adapters* device() { return m_cache.get(); }

    int pages() const { return m_pages; }
    std::uint64_t page_bytes() const { return m_page_bytes; }
    std::uint64_t hits() const { return m_cache->hits(); }
    std::uint64_t misses() const { return m_cache->misses(); }

private:
    io::fleet m_adapters;
    std::vector<io::lora_factors> m_loading; // float32 factors of the adapter being copied (loader scratch)
    std::unique_ptr<kernels::device_lora_cache> m_cache;
    std::uint64_t m_page_bytes = 0;
    int m_pages = 0;
};

} // namespace lorafleet::serve
