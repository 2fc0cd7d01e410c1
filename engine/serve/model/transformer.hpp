// The CPU forward pass of a Llama-family decoder (float32 math; weights read in their stored dtype), batched
// over tokens for continuous batching: one step takes any mix of sequences, each with some new tokens (a
// prefill chunk, or one decode token), runs every projection as one GEMM over all the step's tokens, attends
// each token over its own sequence's paged KV cache, and returns logits for the last new token of each
// sequence (or for all). Invariants: a sequence's logits do not depend on what else is in the batch, bit for
// bit (each token only attends to its own sequence, every other operation is per token, and the products are
// batch-invariant, see gemm.hpp); a step refused for its shape or for cache capacity changes nothing. Not
// thread-safe: one forward() at a time per transformer (it owns scratch buffers and a worker pool); the
// weights are shared and immutable.
#pragma once

#include "engine/serve/adapters/adapter_delta.hpp"
#include "engine/serve/model/forward_step.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/scheduling/worker_pool.hpp"

#include <memory>
#include <span>
#include <vector>

namespace lorafleet::serve {

class transformer {
public:
    // threads <= 0: one per hardware thread (attention and the products; 1 runs everything inline).
    explicit transformer(std::shared_ptr<const model_weights> weights, int threads = 0);

    const model_weights& weights() const { return *m_weights; }
    const io::model_geometry& geometry() const { return m_weights->geometry(); }

    // A kv_cache with this model's geometry under `budget_bytes`.
    kv_cache make_cache(std::uint64_t budget_bytes, int block_size = 16) const {
        return kv_cache(geometry(), budget_bytes, block_size);
    }

    // Runs one step. Every sequence must exist in `cache`, appear once, and fit: the cache blocks for all
    // of them are reserved before anything is computed, so on kv_capacity_error nothing has changed.
    // Throws usage_error for a malformed step (unknown or repeated sequence, token out of the vocabulary,
    // positions that skip ahead or pass the model's max_context).
    step_logits forward(kv_cache& cache, std::span<const sequence_step> batch,
                        AdapterDelta* adapters = nullptr);

private:
    struct token_plan; // per-token bookkeeping of a step (in the .cpp)
    void attention(const kv_cache& cache, int layer, const token_plan& plan, int n);

    std::shared_ptr<const model_weights> m_weights;
    worker_pool m_pool;
    std::vector<float> m_inv_freq; // [head_dim / 2] RoPE inverse frequencies, theta^(-2i / head_dim)

    // Scratch for one step, grown on demand (n = the step's token count).
    std::vector<float> m_x;                   // [n, d_model]  residual stream
    std::vector<float> m_xn;                  // [n, d_model]  normalized input of a sub-block
    std::vector<float> m_q;                   // [n, heads * head_dim]
    std::vector<float> m_k;                   // [n, kv_heads * head_dim]
    std::vector<float> m_v;                   // [n, kv_heads * head_dim]
    std::vector<float> m_att;                 // [n, heads * head_dim] attention output before o_proj
    std::vector<float> m_tmp;                 // [n, d_model]  o_proj / down_proj output
    std::vector<float> m_gate;                // [n, intermediate]
    std::vector<float> m_up;                  // [n, intermediate]
    std::vector<float> m_cos;                 // [n, head_dim / 2]
    std::vector<float> m_sin;                 // [n, head_dim / 2]
    std::vector<std::vector<float>> m_scores; // [workers][group * context] attention probabilities
};

} // namespace lorafleet::serve
