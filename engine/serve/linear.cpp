// Linear projections. W is stored row-major [d_out, d_in] exactly as in the checkpoint, so
// y[n, d_out] = x[n, d_in]·Wᵀ reads W in place (no transposed copy).
#include "engine/serve/linear.hpp"

#include "engine/serve/gemm.hpp"

#include <algorithm>

namespace lorafleet::serve {

void matmul_transposed(const weight_tensor& w, const float* x, float* y, int n_rows, worker_pool* pool) {
    const int d_out = static_cast<int>(w.rows), d_in = static_cast<int>(w.cols);
    gemm_nt(n_rows, d_out, d_in, 1.0f, x, d_in, w.data, d_in, y, d_out, false, pool);
}

void project(const linear_weights& w, int layer, module_kind m, const float* x, float* y, int n_tokens,
             AdapterDelta* adapters, std::span<const int> token_adapter, worker_pool* pool) {
    matmul_transposed(w.weight, x, y, n_tokens, pool);
    if (!w.bias.empty()) {
        const std::int64_t d_out = w.weight.rows;
        for (int t = 0; t < n_tokens; ++t) {
            float* row = y + std::int64_t(t) * d_out;
            for (std::int64_t j = 0; j < d_out; ++j)
                row[j] += w.bias.data[j];
        }
    }
    if (adapters && std::any_of(token_adapter.begin(), token_adapter.end(), [](int s) { return s >= 0; }))
        adapters->apply(layer, m, x, y, n_tokens, token_adapter, pool);
}

} // namespace lorafleet::serve
