// The one function every linear projection of the forward pass goes through: the base product over all
// tokens of a step (batch-invariant, see gemm.hpp), the optional bias, then the adapter seam
// (AdapterDelta::apply). Keeping this the only path is what lets adapters (raw LoRA, the compressed bank)
// plug in without touching the layer code.
#pragma once

#include "engine/serve/adapters/adapter_delta.hpp"
#include "engine/serve/model/model_weights.hpp"

#include <span>

namespace lorafleet::serve {

class worker_pool;

// y = x·Wᵀ (+ bias) (+ adapter delta):
//   x: [n_tokens, d_in], y: [n_tokens, d_out] (overwritten), token_adapter: [n_tokens] or empty.
// `adapters` may be null; it is not called when every token's slot is -1.
void project(const linear_weights& w, int layer, module_kind m, const float* x, float* y, int n_tokens,
             AdapterDelta* adapters, std::span<const int> token_adapter, worker_pool* pool = nullptr);

// y = x·Wᵀ without bias or adapters: x [n_rows, W.cols], y [n_rows, W.rows] (overwritten).
void matmul_transposed(const weight_tensor& w, const float* x, float* y, int n_rows,
                       worker_pool* pool = nullptr);

} // namespace lorafleet::serve
