// Decode attention of one query head over a paged KV cache, with an online (one-pass) softmax: the
// running maximum m, the running normalizer l and the weighted value sum are rescaled whenever a larger
// score appears, so the scores are never stored (FlashAttention / FlashInfer's decode). The cache layout
// is the engine's kv_cache (engine/serve/model/kv_cache.hpp): one layer's keys (and values) are blocks of
// [kv_heads, block_size, head_dim] floats, block b at offset b * kv_heads * block_size * head_dim, and a
// sequence's position p lives in block block_table[p / block_size] at offset p % block_size. GQA: query
// head h reads KV head h / (heads / kv_heads); the caller passes that KV head. Causal: the query at
// position p attends to positions 0..p, i.e. context = p + 1.
// The CPU transformer computes the same softmax in two passes (max first); the results agree to float
// rounding (a few ulp per term), not bit for bit. Shapes: q, out [head_dim]; out must not alias q or the
// cache. The pools hold elements of type E (float, bf16_bits or fp16_bits: half_elements.hpp, the KV
// cache's storage precision); every score, weight and sum is float, each key / value element read into
// float once. Pure function: any thread.
#pragma once

#include "kernels/half_elements.hpp"
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

// Offset (elements) of (block, kv head, slot in block) inside one layer's key or value pool.
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

// Stores one key or value element in the cache's precision (round to nearest even).
template <class E> LORAFLEET_HD void kv_store(E* pool, std::size_t offset, float x) {
    pool[offset] = store_element<E>(x);
}

// Folds score s with value vector v[head_dim] into (state, acc[head_dim]).
template <class E>
LORAFLEET_HD void online_softmax_push(online_softmax_state& st, float* acc, int head_dim, float s,
                                      const E* v) {
    if (s > st.m) {
        const float c = expf(st.m - s); // 0 for the first score (m = -inf)
        st.l = st.l * c + 1.0f;
        for (int i = 0; i < head_dim; ++i)
            acc[i] = acc[i] * c + to_float(v[i]);
        st.m = s;
    } else {
        const float p = expf(s - st.m);
        st.l += p;
        for (int i = 0; i < head_dim; ++i)
            acc[i] += p * to_float(v[i]);
    }
}

// ---- The device kernel's split: one warp per (token, query head), each lane owning the head dims
// i = lane, lane + 32, ... (coalesced loads, at most attention_lane_dims accumulators per lane held in
// registers). Per position: every lane's share of q · k, a butterfly warp sum (identical on all lanes),
// then every lane folds the score into its own copy of the softmax state and its dims.
constexpr int attention_lanes = 32;
constexpr int attention_lane_dims = 8; // head_dim <= 256

// Lane's share of q · k: sum of q[i] k[i] over i = lane, lane + 32, ... < head_dim, in that order.
template <class E> LORAFLEET_HD float attention_lane_dot(const float* q, const E* k, int head_dim, int lane) {
    float s = 0.0f;
    for (int d = 0; d < attention_lane_dims; ++d) {
        const int i = lane + attention_lanes * d;
        if (i < head_dim) s += q[i] * to_float(k[i]);
    }
    return s;
}

// online_softmax_push restricted to the lane's dims: acc[d] is dim lane + 32 d of the value sum.
template <class E>
LORAFLEET_HD void attention_lane_push(online_softmax_state& st, float* acc, int head_dim, int lane, float s,
                                      const E* v) {
    float c = 1.0f, p = 1.0f;
    if (s > st.m) {
        c = expf(st.m - s); // 0 for the first score (m = -inf)
        st.l = st.l * c + 1.0f;
        st.m = s;
    } else {
        p = expf(s - st.m);
        st.l += p;
    }
    for (int d = 0; d < attention_lane_dims; ++d) {
        const int i = lane + attention_lanes * d;
        if (i < head_dim) acc[d] = acc[d] * c + p * to_float(v[i]);
    }
}

// The lane's dims of the normalized output.
LORAFLEET_HD void attention_lane_store(const online_softmax_state& st, const float* acc, int head_dim,
                                       int lane, float* out) {
    const float inv = 1.0f / st.l;
    for (int d = 0; d < attention_lane_dims; ++d) {
        const int i = lane + attention_lanes * d;
        if (i < head_dim) out[i] = acc[d] * inv;
    }
}

// out = softmax(q · Kᵀ · scale) · V over positions 0..context-1 for one query head (scale is
// 1 / sqrt(head_dim)). keys / values point at the layer's pools (block 0 of that layer). context >= 1.
template <class E>
LORAFLEET_HD void paged_decode_attention_head(const float* q, const E* keys, const E* values,
                                              const int* block_table, int context, int kv_head,
                                              const paged_kv_layout& L, float scale, float* out) {
    const int hd = L.head_dim;
    for (int i = 0; i < hd; ++i)
        out[i] = 0.0f;
    online_softmax_state st{-INFINITY, 0.0f};
    for (int j = 0; j < context; ++j) {
        const std::size_t off = paged_kv_offset(L, block_table[j / L.block_size], kv_head, j % L.block_size);
        const E* k = keys + off;
        float s = 0.0f;
        for (int i = 0; i < hd; ++i)
            s += q[i] * to_float(k[i]);
        online_softmax_push(st, out, hd, s * scale, values + off);
    }
    const float inv = 1.0f / st.l;
    for (int i = 0; i < hd; ++i)
        out[i] *= inv;
}

} // namespace lorafleet::kernels
