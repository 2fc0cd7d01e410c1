// The adapter seam of the forward pass. Every linear projection of a decoder layer computes the base
// y = x·Wᵀ (+ bias) for all tokens of a step with one GEMM and then hands (x, y) to an optional
// AdapterDelta, which adds its low-rank update in place. The layer code knows nothing about how adapters
// are stored: raw per-adapter LoRA (A_i, B_i), the compressed bank (per cluster x·V_c, per-token Σ_i,
// ·U_cᵀ), or nothing at all. Invariant: apply() only ever ADDS to y; tokens whose slot is -1 must be left
// untouched, so a step that mixes base-model and adapter sequences needs no second pass.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

namespace lorafleet::serve {

class worker_pool;

// The seven linear modules of a Llama-family decoder layer, in the order they run.
enum class module_kind { q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj };
constexpr int module_kind_count = 7;

constexpr std::array<std::string_view, module_kind_count> module_kind_names{
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

constexpr std::string_view module_name(module_kind m) {
    return module_kind_names[static_cast<int>(m)];
}
// "q_proj" -> module_kind::q_proj; nullopt for any other name.
constexpr std::optional<module_kind> parse_module_kind(std::string_view name) {
    for (int i = 0; i < module_kind_count; ++i)
        if (module_kind_names[i] == name) return static_cast<module_kind>(i);
    return std::nullopt;
}

// An update split so that the forward pass can run it inside the base product's own parallel loop (one
// hand-off to the worker threads per projection instead of two): AdapterDelta::fuse() prepares it, then
// fused_pre(item, worker) for item < pre_items read x only (e.g. the shrink x·V and the core), and once all
// of them have finished, fused_post(j0, j1, worker) adds the update to columns [j0, j1) of every token's y,
// after the base values of those columns are final. Column ranges are disjoint and start at multiples of
// 16; pre items run concurrently with each other, posts of different ranges too. `work` is the update's
// multiply-adds (it counts towards going parallel).
struct fused_delta {
    std::size_t pre_items = 0;
    double work = 0.0;
};

class AdapterDelta {
public:
    virtual ~AdapterDelta() = default;

    // Adds the adapter update of module `m` in layer `layer` to y, token by token:
    //   x:             [n_tokens, d_in]  row-major, the module's input
    //   y:             [n_tokens, d_out] row-major, already holds the base output; accumulate into it
    //   token_adapter: [n_tokens]        adapter slot of each token, -1 = base model (leave y alone)
    // d_in / d_out are the module's shapes in the base model's geometry. Called from one thread at a time.
    // `pool` (may be null) is the caller's worker pool, idle during the call: an implementation may spread
    // its work over it (the forward pass lends its own, so no second set of threads competes for the cores).
    virtual void apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
                       std::span<const int> token_adapter, worker_pool* pool) = 0;

    // Optional fused form of apply() (fused_delta above): prepares this module's update for the step and
    // returns true when it can run that way, with results equal bit for bit to apply()'s; false (the
    // default) means "call apply() after the product". `workers` is the size of the pool that will run
    // it. Until the next fuse() or apply(), the forward pass calls fused_pre / fused_post as described.
    virtual bool fuse(int layer, module_kind m, const float* x, float* y, int n_tokens,
                      std::span<const int> token_adapter, int workers, fused_delta& out) {
        (void)layer, (void)m, (void)x, (void)y, (void)n_tokens, (void)token_adapter, (void)workers, (void)out;
        return false;
    }
    virtual void fused_pre(std::size_t item, int worker) { (void)item, (void)worker; }
    virtual void fused_post(int j0, int j1, int worker) { (void)j0, (void)j1, (void)worker; }
};

} // namespace lorafleet::serve
