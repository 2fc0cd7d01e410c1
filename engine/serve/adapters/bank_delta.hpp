// BankDelta: serving straight from a compressed bank (method.md §7). For a module, the step's tokens are
// taken cluster by cluster, and each token adds U_c·(Σ_i·(V_cᵀx)) to its row with add_factored_delta
// (factored_delta.hpp): V_cᵀx [r], then the core (Σ_i [r, r], or diag(σ_i)), then U_c from a transposed copy
// Uᵀ [r, d_out] kept for that. On a CPU the cluster's bases stay in cache while its tokens stream through, so
// the per-token form costs only the r·(d_in + d_out + r) multiply-adds. No per-adapter factor of size d ever
// exists: an adapter costs its cores only. Invariants: every bank module is a decoder linear of a layer the
// base model has, with the base's exact [d_out, d_in] (shape_mismatch naming the module otherwise); all bases
// and cores are float32 and resident; tokens with slot -1, or whose adapter lacks the module, are left
// untouched; a token's delta depends only on its own row (batch-invariant); a removed adapter's slot is
// reused by the next install (lowest free slot first; see adapter_provider.hpp for why that is safe).
// Threading: not thread-safe, except prepare_add(), which reads only the modules and bases (never changed
// after construction) and may run on any thread; the serving engine calls every other method from its
// own thread. apply() splits a
// large step into runs of tokens on the caller's worker_pool (each token writes only its own row,
// and its products are the same whichever thread computes them, so results do not depend on threads).
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/compress/compress_backend.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/adapters/factored_delta.hpp"

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
    BankDelta(bank::compressed_bank bank, io::model_geometry base, const std::string& where);
    ~BankDelta() override;

    std::string_view mode() const override { return "compressed"; }
    int find(std::string_view name) const override;
    std::vector<adapter_info> list() const override;
    std::size_t prepare(std::span<const int> slots) override;
    // Projects the PEFT adapter onto every cluster's bases exactly as `lorafleet-cli add` does
    // (bank::project_onto_bank, bank_add.hpp, on the CPU; method.md §6) and keeps the cluster with the
    // lowest exact error; its modules the bank lacks are not represented.
    std::unique_ptr<prepared_adapter> prepare_add(const std::filesystem::path& peft_dir,
                                                  const std::string& name) const override;
    adapter_info install(std::unique_ptr<prepared_adapter> prepared) override;
    bool remove(std::string_view name) override;
    adapter_memory_stats memory() const override;

    void apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
               std::span<const int> token_adapter, worker_pool* pool) override;
    // Fused form: one pre item per run of a cluster's tokens (shrink and core into per-token w), then the
    // expand of each block of output columns for every run (factored_shrink / factored_expand).
    bool fuse(int layer, module_kind m, const float* x, float* y, int n_tokens,
              std::span<const int> token_adapter, int workers, fused_delta& out) override;
    void fused_pre(std::size_t item, int worker) override;
    void fused_post(int j0, int j1, int worker) override;

    // Device twin: the bases and every slot's core uploaded as a device bank
    // (backend/device_twin_factories.hpp), made on the first call; afterwards add()/remove() of a bank
    // adapter throw unsupported_error (the device bank has no per-slot upload yet).
    bool has_device_twin() const override { return true; }
    backend::device_adapters* device_twin() override;

    int rank() const { return m_bank.rank; }
    int clusters() const { return m_bank.clusters; }

private:
    struct slot_entry {
        bank::bank_adapter adapter;            // name, source, cluster, per-module errors
        std::vector<std::vector<float>> cores; // [bank module]: Σᵀ [r, r] or σ [r], empty where absent
        bool alive = true;
        std::uint64_t bytes() const;
    };
    adapter_info info_of(int slot) const;
    const slot_entry& live(int slot, const char* what) const;
    // Adapter `index` of `bank`'s cores, per bank module, in the kernel's layout (empty where absent).
    static std::vector<std::vector<float>> kernel_cores(const bank::compressed_bank& bank,
                                                        const bank::bank_adapter& adapter, std::size_t index);
    int take_slot(bank::bank_adapter adapter, std::vector<std::vector<float>> cores); // lowest free slot

    bank::compressed_bank m_bank; // modules, bases, kind, rank; adapters and cores are moved into m_slots
    io::model_geometry m_base;
    std::vector<std::array<int, module_kind_count>> m_module_index; // [layer][kind] -> bank module, -1
    std::vector<slot_entry> m_slots;
    std::map<std::string, int, std::less<>> m_by_name; // live adapters only
    std::vector<int> m_free;                           // removed slots, reused lowest first
    // The kernel's copies of each cluster basis (factored_delta.hpp): Uᵀ [r, d_out], and when every value of
    // the module's bases is exactly an IEEE half (a bank stored as F16), Vᵀ and Uᵀ as halves instead, which
    // halves the bytes a step reads without changing a single value.
    struct kernel_basis {
        std::vector<float> ut;           // [r, d_out] (float path)
        std::vector<std::uint16_t> vt16; // [r, d_in]  (half path)
        std::vector<std::uint16_t> ut16; // [r, d_out] (half path)
        std::uint64_t bytes() const { return ut.size() * 4 + (vt16.size() + ut16.size()) * 2; }
    };
    std::vector<std::vector<kernel_basis>> m_kernel; // [bank module][cluster]
    std::vector<char> m_half;                        // [bank module] bases held as halves
    std::uint64_t m_live_core_bytes = 0; // Σ bytes() over live slots (memory() runs every engine step)
    std::size_t m_live_count = 0;        // live slots
    std::unique_ptr<backend::device_adapters> m_device; // the device twin, once asked for

    // What a step looks up per token, flat so that it costs no pointer chase through slot_entry:
    std::vector<std::vector<const float*>> m_core_ptr; // [bank module][slot] the slot's core, null if none
    std::vector<int> m_slot_cluster;                   // [slot] the slot's cluster, -1 once removed

    // Scratch for apply(), grown on demand.
    std::vector<std::vector<int>> m_members; // [cluster] token rows of the step in that cluster
    struct token_run {
        int cluster = 0;
        std::size_t begin = 0, end = 0; // range of m_tokens
    };
    std::vector<factored_token> m_tokens;      // the step's adapter tokens, cluster by cluster
    std::vector<token_run> m_runs;             // work items: runs of one cluster's tokens
    std::vector<std::vector<float>> m_scratch; // [worker] 8·r floats for add_factored_delta
    std::vector<float> m_w;                    // [m_tokens, r] per-token Σ_i·(Vᵀx) of a fused update
    int m_fused_module = -1;                   // bank module of the prepared fused update, -1: none

    // Fills m_tokens / m_runs for module `m` of `layer`; the bank module's index, or -1 when no token of
    // the step has an update there.
    int collect(int layer, module_kind m, const float* x, float* y, int n_tokens,
                std::span<const int> token_adapter);
    // Grows the per-worker scratch for `workers` threads; the multiply-adds of module `mi`'s update for the
    // collected tokens.
    double size_scratch(int mi, int workers);
    // The kernel's view of bank module `mi`'s basis for `cluster`, as halves or floats.
    factored_basis<std::uint16_t> half_basis(int mi, int cluster) const;
    factored_basis<float> float_basis(int mi, int cluster) const;
};

} // namespace lorafleet::serve
