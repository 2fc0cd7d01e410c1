// A reference AdapterDelta: uncompressed LoRA adapters applied per token, y += s · B (A x), with A and B
// as PEFT stores them. It exists to test the adapter seam (its output must equal the base model with
// s·B·A merged into W) and as the "raw multi-adapter" baseline; it makes no attempt at the segmented
// kernels a production path would use beyond grouping runs of tokens that share an adapter into one GEMM.
// Invariants: every stored (A, B) pair agrees with the base geometry's module shape (checked on add).
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_delta.hpp"

#include <map>
#include <tuple>
#include <vector>

namespace lorafleet::serve {

struct lora_module_weights {
    int rank = 0;
    float scale = 1.0f;   // lora_alpha / r (or / sqrt(r) for rsLoRA), folded in by the caller
    std::vector<float> a; // [rank, d_in]
    std::vector<float> b; // [d_out, rank]
};

class RawLoraDelta : public AdapterDelta {
public:
    explicit RawLoraDelta(io::model_geometry geometry) : m_geometry(std::move(geometry)) {}

    // Sets adapter `slot`'s update on (layer, module); shape_mismatch when A or B disagree with the module.
    void set_module(int slot, int layer, module_kind m, lora_module_weights w);
    // Forgets every module of `slot` (a no-op for a slot without any).
    void erase_slot(int slot);

    void apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
               std::span<const int> token_adapter, worker_pool* pool) override;

private:
    io::model_geometry m_geometry;
    std::map<std::tuple<int, int, int>, lora_module_weights> m_modules; // (slot, layer, module) -> weights
    std::vector<float> m_tmp;                                           // [n_tokens, rank] scratch
};

} // namespace lorafleet::serve
