// HybridDelta: hybrid serving (issue 18) — a compressed bank whose few adapters that compression hurts are
// served from their original PEFT weights, in the same engine and the same batch as the compressed ones.
// It composes two providers by adapter name: the bank's (BankDelta: every adapter, compressed) and a raw
// one (CachedLoraDelta, an LRU cache over the raw adapters' mmapped files). Its slots are the bank's slots;
// a slot whose name the raw provider has is routed to the raw one, every other slot to the bank.
// apply() splits the step's tokens between the two (each adds only to its own tokens' rows; apply() only
// ever adds, adapter_delta.hpp), so a raw-served token's row is exactly what raw serving gives it (base
// product, then the raw update) and a compressed token's exactly what compressed serving gives it, bit for
// bit (the forward pass is batch-invariant). A step without raw tokens runs the bank's fused path; a step
// with some runs the unfused products (bit for bit the same values, gemm.hpp).
// Adapters added while serving are projected into the bank (compressed); removing a raw-served adapter
// removes it from both. No device twin: a hybrid bank serves on the CPU (device auto picks the CPU).
// Threading: as adapter_provider.hpp — the engine thread, except prepare_add (any thread).
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::serve {

class HybridDelta final : public AdapterProvider {
public:
    // `compressed` holds every adapter of the bank; `raw` the ones served raw, under the same names
    // (usage_error for a raw name the bank lacks).
    HybridDelta(std::unique_ptr<AdapterProvider> compressed, std::unique_ptr<AdapterProvider> raw);

    std::string_view mode() const override { return "hybrid"; }
    int find(std::string_view name) const override { return m_compressed->find(name); }
    // Every adapter, with `serving` "raw" or "compressed"; raw ones report the raw provider's bytes.
    std::vector<adapter_info> list() const override;
    std::size_t prepare(std::span<const int> slots) override;
    std::unique_ptr<prepared_adapter> prepare_add(const std::filesystem::path& peft_dir,
                                                  const std::string& name) const override {
        return m_compressed->prepare_add(peft_dir, name);
    }
    adapter_info install(std::unique_ptr<prepared_adapter> prepared) override;
    bool remove(std::string_view name) override;
    // Both providers' bytes; hits, misses and evictions of the raw cache.
    adapter_memory_stats memory() const override;

    void apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
               std::span<const int> token_adapter, worker_pool* pool) override;
    bool fuse(int layer, module_kind m, const float* x, float* y, int n_tokens,
              std::span<const int> token_adapter, int workers, fused_delta& out) override;
    void fused_pre(std::size_t item, int worker) override { m_compressed->fused_pre(item, worker); }
    void fused_post(int j0, int j1, int worker) override { m_compressed->fused_post(j0, j1, worker); }

    // Whether `slot` is served raw.
    bool is_raw(int slot) const {
        return slot >= 0 && std::size_t(slot) < m_raw_slot.size() && m_raw_slot[std::size_t(slot)] >= 0;
    }
    int raw_adapters() const; // how many adapters are served raw

private:
    void route(int slot, std::string_view name); // m_raw_slot[slot]: the raw provider's slot of `name`
    // Splits a step's slots into the bank's (raw-served ones as -1) and the raw provider's (others -1);
    // whether any token is raw-served.
    bool split(std::span<const int> token_adapter);

    std::unique_ptr<AdapterProvider> m_compressed;
    std::unique_ptr<AdapterProvider> m_raw;
    std::vector<int> m_raw_slot; // [bank slot] the raw provider's slot, -1: served compressed
    std::vector<int> m_tok_bank; // [n_tokens] scratch
    std::vector<int> m_tok_raw;  // [n_tokens] scratch
    std::vector<int> m_prep_raw; // scratch of prepare()
};

// A bank (read and checked) with its raw adapters: a plain BankDelta when bank.raw_adapters is empty, else
// a HybridDelta whose raw provider registers each raw adapter's recorded source folder (as recorded, else
// relative to `bank_dir`'s parent; io_error naming the adapter when it is gone, validation_error when its
// files no longer fit the base). The raw cache holds `raw_cache_bytes`, 0: all raw adapters at once.
std::unique_ptr<AdapterProvider> open_hybrid_bank(bank::compressed_bank bank, const io::model_geometry& base,
                                                  const std::string& where,
                                                  const std::filesystem::path& bank_dir = {},
                                                  std::uint64_t raw_cache_bytes = 0);

} // namespace lorafleet::serve
