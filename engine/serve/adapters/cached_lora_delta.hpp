// CachedLoraDelta: raw PEFT adapters served behind a byte-bounded LRU cache (the vLLM-style baseline the
// compressed bank is compared with). Registered adapters are kept only as memory-mapped peft_adapter
// handles; their float32 A and s·B (scale folded into B) are resident only while cached. prepare() makes
// a step's adapters resident in priority order, evicting least-recently-prepared adapters that the step
// does not need, and returns the prefix that fits; apply() then adds y += B (A x) per run of consecutive
// tokens of one adapter (RawLoraDelta, batch-invariant products).
// Invariants: resident bytes never exceed the capacity; an adapter larger than the whole cache is refused
// at registration; a removed adapter's slot is reused by the next install (lowest free slot first; see
// adapter_provider.hpp for why that is safe); apply() on a token whose adapter is not resident is a
// usage_error (the caller skipped prepare()).
// Threading: not thread-safe, except prepare_add(), which reads only the base geometry and the capacity
// (fixed at construction) and may run on any thread; the serving engine calls every other method from
// its own thread.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/adapters/raw_lora_delta.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::serve {

class CachedLoraDelta final : public AdapterProvider {
public:
    CachedLoraDelta(io::model_geometry base, std::uint64_t cache_bytes);
    ~CachedLoraDelta() override;

    // Float32 bytes adapter `a` occupies when resident: sum over modules of (r·d_in + d_out·r) · 4.
    static std::uint64_t resident_bytes_of(const io::peft_adapter& a);

    std::string_view mode() const override { return "raw"; }
    int find(std::string_view name) const override;
    std::vector<adapter_info> list() const override;
    std::size_t prepare(std::span<const int> slots) override;
    // prepare_add loads (mmaps and validates against the base geometry) the adapter; validation_error
    // when its float32 factors would not fit in the whole cache. install registers it; usage_error when
    // `name` is taken.
    std::unique_ptr<prepared_adapter> prepare_add(const std::filesystem::path& peft_dir,
                                                  const std::string& name) const override;
    adapter_info install(std::unique_ptr<prepared_adapter> prepared) override;
    bool remove(std::string_view name) override;
    adapter_memory_stats memory() const override;

    void apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
               std::span<const int> token_adapter, worker_pool* pool) override;

    // Device twin: a device LoRA cache (backend/device_twin_factories.hpp) over the same adapters and slots
    // with the same byte budget, made on the first call. Afterwards prepare() forwards there (the host cache
    // is no longer filled), memory() reports the device cache's capacity, hits and misses, and add()/remove()
    // of a registered name throw unsupported_error.
    bool has_device_twin() const override { return true; }
    backend::device_adapters* device_twin() override;

    bool is_resident(int slot) const;

private:
    struct entry {
        std::string name;
        std::shared_ptr<const io::peft_adapter> adapter; // null once removed
        std::uint64_t bytes = 0;                         // float32 bytes when resident
        bool resident = false;
        std::uint64_t last_use = 0; // prepare() tick of the last time it was asked for
    };
    const entry& live(int slot, const char* what) const;
    void load(int slot);
    void load_modules(int slot, const io::peft_adapter& adapter);
    void evict(int slot);

    io::model_geometry m_base;
    std::uint64_t m_capacity = 0;
    std::vector<entry> m_slots; // indexed by slot
    std::map<std::string, int, std::less<>> m_by_name;
    std::vector<int> m_free; // removed slots, reused lowest first
    RawLoraDelta m_resident; // the cached factors, keyed by slot
    std::uint64_t m_resident_bytes = 0;
    std::uint64_t m_tick = 0;
    std::uint64_t m_hits = 0, m_misses = 0, m_evictions = 0;
    std::unique_ptr<backend::device_adapters> m_device; // the device twin, once asked for
};

} // namespace lorafleet::serve
