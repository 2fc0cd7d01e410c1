// Per-token raw LoRA arithmetic shared by the GPU's BGMV kernels and their CPU checks (the compressed
// bank's kernels are tiled: bank_tiles.hpp). Raw LoRA (engine/serve/adapters/raw_lora_delta.cpp, the Punica
// BGMV pair for one token): shrink t = A x (A [rank, d_in] as PEFT stores it), expand y += scale · B t (B
// [d_out, rank]). Sums run in index order in float, like the CPU's scalar reference order; the CPU's gemm_nt
// sums in 8 interleaved partials, so the two agree to float rounding. The factors A, B may be stored as E
// (float, or bf16_bits / fp16_bits: half_elements.hpp, the device cache's precision) and are read into float;
// x, t, y and every sum are float. Pure functions: any thread.
#pragma once

#include "kernels/half_elements.hpp"
#include "kernels/serve_hd.hpp"

namespace lorafleet::kernels {

// One element of a row-major product: sum_k a[k] * b[k] over n, in index order.
template <class E> LORAFLEET_HD float dot_in_order(const E* a, const float* b, int n) {
    float acc = 0.0f;
    for (int k = 0; k < n; ++k)
        acc += to_float(a[k]) * b[k];
    return acc;
}

// Raw LoRA shrink of one token: t[p] = A[p, :] · x for p < rank.
template <class E>
LORAFLEET_HD void bgmv_shrink_token(const E* a, const float* x, float* t, int rank, int d_in) {
    for (int p = 0; p < rank; ++p)
        t[p] = dot_in_order(a + p * d_in, x, d_in);
}

// Raw LoRA expand of one output element: scale * B[o, :] · t.
template <class E>
LORAFLEET_HD float bgmv_expand_element(const E* b, const float* t, int o, int rank, float scale) {
    return scale * dot_in_order(b + o * rank, t, rank);
}

// Raw LoRA expand of one token: y[o] += scale * B[o, :] · t for o < d_out.
template <class E>
LORAFLEET_HD void bgmv_expand_token(const E* b, const float* t, float* y, int d_out, int rank, float scale) {
    for (int o = 0; o < d_out; ++o)
        y[o] += bgmv_expand_element(b, t, o, rank, scale);
}

} // namespace lorafleet::kernels
