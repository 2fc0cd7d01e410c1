// Decode attention of one query head over a paged KV cache, with an online (one-pass) softmax: the
// running maximum m, the running normalizer l and the weighted value sum are rescaled whenever a larger
// score appears, so the scores are never stored (FlashAttention / FlashInfer's decode). The cache layout
// is the engine's kv_cache (engine/serve/kv_cache.hpp): one layer's keys (and values) are blocks of
// [kv_heads, block_size, head_dim] floats, block b at offset b * kv_heads * block_size * head_dim, and a
// sequence's position p lives in block block_table[p / block_size] at offset p % block_size. GQA: query
// head h reads KV head h / (heads / kv_heads); the caller passes that KV head. Causal: the query at
// position p attends to positions 0..p, i.e. context = p + 1.
// The CPU transformer computes the same softmax in two passes (max first); the results agree to float
// rounding (a few ulp per term), not bit for bit. Shapes: q, out [head_dim]; out must not alias q or the
// cache. Pure function: any thread.
#pragma once

#include "kernels/serve_hd.hpp"

#include <cmath>
#include <cstddef>

namespace lorafleet::kernels {

// Geometry of one layer of the paged cache.
struct paged_kv_layout {
    int kv_heads = 0;
    int block_size = 16;
    int head_dim = 0;
};

// Offset (floats) of (block, kv head, slot in block) inside one layer's key or value pool.
LORAFLEET_HD std::size_t paged_kv_offset(const paged_kv_layout& L, int block, int kv_head, int slot) {
    return ((std::size_t(block) * std::size_t(L.kv_heads) + std::size_t(kv_head)) *
                std::size_t(L.block_size) +
            std::size_t(slot)) *
           std::size_t(L.head_dim);
}

// Online-softmax state over one head: m = max score so far, l = sum of exp(score - m).
struct online_softmax_state {
    float m;
    float l;
};

// Folds score s with value vector v[head_dim] into (state, acc[head_dim]).
LORAFLEET_HD void online_softmax_push(online_softmax_state& st, float* acc, int head_dim, float s,
                                      const float* v) {
    if (s > st.m) {
        const float c = expf(st.m - s); // 0 for the first score (m = -inf)
        st.l = st.l * c + 1.0f;
        for (int i = 0; i < head_dim; ++i)
            acc[i] = acc[i] * c + v[i];
        st.m = s;
    } else {
        const float p = expf(s - st.m);
        st.l += p;
        for (int i = 0; i < head_dim; ++i)
            acc[i] += p * v[i];
    }
}

// Folds positions first, first + stride, ... < context into (st, acc[head_dim]) without normalizing: the
// piece one GPU lane computes. keys / values point at the layer's pools (block 0 of that layer).
LORAFLEET_HD void paged_attention_partial(const float* q, const float* keys, const float* values,
                                          const int* block_table, int context, int first, int stride,
                                          int kv_head, const paged_kv_layout& L, float scale,
                                          online_softmax_state& st, float* acc) {
    const int hd = L.head_dim;
    for (int j = first; j < context; j += stride) {
        const int block = block_table[j / L.block_size], slot = j % L.block_size;
        const std::size_t off = paged_kv_offset(L, block, kv_head, slot);
        const float* k = keys + off;
        float s = 0.0f;
        for (int i = 0; i < hd; ++i)
            s += q[i] * k[i];
        online_softmax_push(st, acc, hd, s * scale, values + off);
    }
}

// Weight of a partial state when partials are merged under the common maximum m_all: exp(m - m_all),
// 0 for a partial that saw no position.
LORAFLEET_HD float online_softmax_weight(const online_softmax_state& st, float m_all) {
    return st.l > 0.0f ? expf(st.m - m_all) : 0.0f;
}

// out = softmax(q · Kᵀ · scale) · V over positions 0..context-1 for one query head (scale is
// 1 / sqrt(head_dim)). keys / values point at the layer's pools (block 0 of that layer). context >= 1.
LORAFLEET_HD void paged_decode_attention_head(const float* q, const float* keys, const float* values,
                                              const int* block_table, int context, int kv_head,
                                              const paged_kv_layout& L, float scale, float* out) {
    const int hd = L.head_dim;
    for (int i = 0; i < hd; ++i)
        out[i] = 0.0f;
    online_softmax_state st{-INFINITY, 0.0f};
    paged_attention_partial(q, keys, values, block_table, context, 0, 1, kv_head, L, scale, st, out);
    const float inv = 1.0f / st.l;
    for (int i = 0; i < hd; ++i)
        out[i] *= inv;
}

} // namespace lorafleet::kernels
