// BankDelta: serving straight from a compressed bank (method.md §7). For a module, the step's tokens are
// grouped by their adapter's cluster c; per cluster one product Z = X_c·V_c [n_c, r], per token
// w = Σ_i z [r] (Σ_i [r, r], or diag(σ_i)), and ΔY_c = W·U_cᵀ [n_c, d_out] added to the tokens' rows. ΔY
// is summed per token as Σ_p w_p·(row p of U_cᵀ), from a transposed copy of U_c kept for that: with
// k = r that tiny, gemm_nt's per-element horizontal reductions would cost more than the products. No
// per-adapter factor of size d ever exists: an adapter costs its cores only. Invariants: every bank module is
// a decoder linear of a layer the base model has, with the base's exact [d_out, d_in] (shape_mismatch naming
// the module otherwise); all bases and cores are float32 and resident; tokens with slot -1, or whose adapter
// lacks the module, are left untouched; a token's delta depends only on its own row (batch-invariant
// products, gemm.hpp); slots are never reused. Threading: not thread-safe; the serving engine calls every
// method from its own thread. apply() spreads the step's clusters over an internal worker_pool (each cluster
// writes only its own tokens' rows, and each token's products are the same whichever thread computes them, so
// results do not depend on threads).
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/compress/compress_backend.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/adapter_provider.hpp"
#include "engine/serve/worker_pool.hpp"

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::serve {

class BankDelta final : public AdapterProvider {
public:
    // Takes the bank (as read_bank returns it); shape_mismatch when it does not fit `base`. `where`
    // names the bank in errors (its folder). Adapters get slots 0..n-1 in bank order.
    // `threads` sizes apply()'s worker pool (<= 0: one per hardware thread, 1: everything inline).
    BankDelta(bank::compressed_bank bank, io::model_geometry base, const std::string& where, int threads = 0);
    ~BankDelta() override;

    std::string_view mode() const override { return "compressed"; }
    int find(std::string_view name) const override;
    std::vector<adapter_info> list() const override;
    std::size_t prepare(std::span<const int> slots) override;
    // Projects the PEFT adapter onto every cluster's bases (bank_builder add_adapters, method.md §6) and
    // keeps the cluster with the lowest exact error; its modules the bank lacks are not represented.
    adapter_info add(const std::filesystem::path& peft_dir, const std::string& name) override;
    bool remove(std::string_view name) override;
    adapter_memory_stats memory() const override;

    void apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
               std::span<const int> token_adapter) override;

    int rank() const { return m_bank.rank; }
    int clusters() const { return m_bank.clusters; }

private:
    struct slot_entry {
        bank::bank_adapter adapter;            // name, source, cluster, per-module errors
        std::vector<std::vector<float>> cores; // [bank module]: core_size() floats, empty where absent
        bool alive = true;
        std::uint64_t bytes() const;
    };
    adapter_info info_of(int slot) const;
    const slot_entry& live(int slot, const char* what) const;
    int take_slot(bank::bank_adapter adapter, std::size_t bank_index); // moves adapter bank_index's cores

    bank::compressed_bank m_bank; // modules, bases, kind, rank; adapters and cores are moved into m_slots
    io::model_geometry m_base;
    std::vector<std::array<int, module_kind_count>> m_module_index; // [layer][kind] -> bank module, -1
    std::vector<slot_entry> m_slots;
    std::map<std::string, int, std::less<>> m_by_name;    // live adapters only
    std::unique_ptr<compress::CompressBackend> m_backend; // for add(), created on first use
    std::vector<std::vector<std::vector<float>>> m_ut;    // [bank module][cluster] U_cᵀ [r, d_out]
    std::uint64_t m_live_core_bytes = 0; // Σ bytes() over live slots (memory() runs every engine step)
    std::size_t m_live_count = 0;        // live slots

    // Scratch for apply(), grown on demand.
    struct cluster_scratch {
        std::vector<float> xc; // [n_c, d_in]
        std::vector<float> z;  // [n_c, r]
        std::vector<float> w;  // [n_c, r]
        std::vector<float> yc; // [d_out] one token's ΔY
    };
    void apply_cluster(int mi, int c, const float* x, float* y, std::span<const int> token_adapter,
                       cluster_scratch& s);
    std::vector<std::vector<int>> m_members; // [cluster] token rows of the step in that cluster
    std::vector<int> m_active;               // clusters with tokens in this call
    std::vector<cluster_scratch> m_scratch;  // [worker]
    std::unique_ptr<worker_pool> m_pool;
};

} // namespace lorafleet::serve
