// Linear projections. W is stored row-major [d_out, d_in] exactly as in the checkpoint (its dtype too), so
// y[n, d_out] = x[n, d_in]·Wᵀ reads W in place (no transposed or widened copy: gemm.hpp).
#include "engine/serve/model/linear.hpp"

#include "engine/serve/model/gemm.hpp"
#include "engine/serve/scheduling/worker_pool.hpp"

#include <algorithm>

namespace lorafleet::serve {

void matmul_transposed(const weight_tensor& w, const float* x, float* y, int n_rows, worker_pool* pool) {
    const int d_out = static_cast<int>(w.rows), d_in = static_cast<int>(w.cols);
    gemm_nt(n_rows, d_out, d_in, 1.0f, x, d_in, w.data, w.dtype, d_in, y, d_out, false, pool);
}

void project(const linear_weights& w, int layer, module_kind m, const float* x, float* y, int n_tokens,
             AdapterDelta* adapters, std::span<const int> token_adapter, worker_pool* pool) {
    const int d_out = static_cast<int>(w.weight.rows), d_in = static_cast<int>(w.weight.cols);
    // Bias of columns [j0, j1) of every row: added before any adapter update, as in the unfused order.
    const float* bias = w.bias.f32(); // biases are float32 (model_weights.hpp)
    auto add_bias = [&](int j0, int j1) {
        for (int t = 0; t < n_tokens; ++t) {
            float* row = y + std::int64_t(t) * d_out;
            for (int j = j0; j < j1; ++j)
                row[j] += bias[j];
        }
    };
    const bool has_bias = !w.bias.empty();
    const bool adapted =
        adapters && std::any_of(token_adapter.begin(), token_adapter.end(), [](int s) { return s >= 0; });
    fused_delta delta;
    if (adapted && adapters->fuse(layer, m, x, y, n_tokens, token_adapter, pool ? pool->size() : 1, delta)) {
        // Lambdas holding one pointer each, so no std::function allocates on this per-module path.
        struct context {
            AdapterDelta* adapters;
            bool has_bias;
            decltype(add_bias)* bias;
        } ctx{adapters, has_bias, &add_bias};
        gemm_fused fused;
        fused.pre_items = delta.pre_items;
        fused.work = delta.work;
        fused.pre = [a = adapters](std::size_t item, int worker) { a->fused_pre(item, worker); };
        fused.post = [c = &ctx](int j0, int j1, int worker) {
            if (c->has_bias) (*c->bias)(j0, j1);
            c->adapters->fused_post(j0, j1, worker);
        };
        gemm_nt(n_tokens, d_out, d_in, 1.0f, x, d_in, w.weight.data, w.weight.dtype, d_in, y, d_out, false,
                pool, fused);
        return;
    }
    matmul_transposed(w.weight, x, y, n_tokens, pool);
    if (has_bias) add_bias(0, d_out);
    if (adapted) adapters->apply(layer, m, x, y, n_tokens, token_adapter, pool);
}

} // namespace lorafleet::serve
