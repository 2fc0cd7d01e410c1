// Per-token raw LoRA arithmetic shared by the GPU's BGMV kernels and their CPU checks (the compressed
// bank's kernels are tiled: bank_tiles.hpp). Raw LoRA (engine/serve/adapters/raw_lora_delta.cpp, the Punica BGMV
// pair for one token): shrink t = A x (A [rank, d_in] as PEFT stores it), expand y += scale · B t
// (B [d_out, rank]). Sums run in index order in float, like the CPU's scalar reference order; the CPU's
// gemm_nt sums in 8 interleaved partials, so the two agree to float rounding. Pure functions: any thread.
#pragma once

#include "kernels/serve_hd.hpp"

namespace lorafleet::kernels {

// One element of a row-major product: sum_k a[k] * b[k] over n, in index order.
LORAFLEET_HD float dot_in_order(const float* a, const float* b, int n) {
    float acc = 0.0f;
    for (int k = 0; k < n; ++k)
        acc += a[k] * b[k];
    return acc;
}

// Raw LoRA shrink of one token: t[p] = A[p, :] · x for p < rank.
LORAFLEET_HD void bgmv_shrink_token(const float* a, const float* x, float* t, int rank, int d_in) {
    for (int p = 0; p < rank; ++p)
        t[p] = dot_in_order(a + p * d_in, x, d_in);
}

// Raw LoRA expand of one output element: scale * B[o, :] · t.
LORAFLEET_HD float bgmv_expand_element(const float* b, const float* t, int o, int rank, float scale) {
    return scale * dot_in_order(b + o * rank, t, rank);
}

// Raw LoRA expand of one token: y[o] += scale * B[o, :] · t for o < d_out.
LORAFLEET_HD void bgmv_expand_token(const float* b, const float* t, float* y, int d_out, int rank,
                                    float scale) {
    for (int o = 0; o < d_out; ++o)
        y[o] += bgmv_expand_element(b, t, o, rank, scale);
}

} // namespace lorafleet::kernels
