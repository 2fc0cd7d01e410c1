// The forward pass (see transformer.hpp). Reads top to bottom as one step runs: plan and reserve, embed,
// then per layer RMSNorm -> q/k/v -> RoPE -> cache write -> attention -> o_proj -> residual -> RMSNorm ->
// SwiGLU MLP -> residual, and finally norm + lm_head on the rows whose logits were asked for.
// Numerics follow HuggingFace's Llama: RMSNorm in float32 (sum of squares accumulated in double here),
// RoPE in the rotate_half layout (pairs (i, i + head_dim/2)), softmax with the max subtracted.
#include "engine/serve/model/transformer.hpp"

#include "engine/core/error.hpp"
#include "engine/serve/model/linear.hpp"
#include "engine/serve/model/step_layout.hpp"

#include <algorithm>
#include <cmath>

namespace lorafleet::serve {

// ---- Per-token plan of a step -------------------------------------------------------------------------
struct transformer::token_plan {
    std::span<const int> position; // [n] (the step_layout's)
    // Block table of each token's sequence (valid during the step: nothing reallocates it meanwhile).
    std::vector<std::span<const int>> blocks; // [n]
};

namespace {

// x <- weight * x / sqrt(mean(x^2) + eps), row by row: x, out [n, d].
void rms_norm(const float* x, const float* weight, float* out, int n, int d, float eps) {
    for (int t = 0; t < n; ++t) {
        const float* xr = x + std::size_t(t) * d;
        float* o = out + std::size_t(t) * d;
        double ss = 0;
        for (int i = 0; i < d; ++i)
            ss += double(xr[i]) * xr[i];
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / d + double(eps)));
        for (int i = 0; i < d; ++i)
            o[i] = weight[i] * (xr[i] * inv);
    }
}

// Rotates each head of rows [n, heads * head_dim] by the token's angles (rotate_half layout).
void apply_rope(float* x, int n, int heads, int head_dim, const float* cos, const float* sin) {
    const int half = head_dim / 2;
    for (int t = 0; t < n; ++t) {
        const float* c = cos + std::size_t(t) * half;
        const float* s = sin + std::size_t(t) * half;
        for (int h = 0; h < heads; ++h) {
            float* v = x + (std::size_t(t) * heads + h) * head_dim;
            for (int i = 0; i < half; ++i) {
                const float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

// Eight independent partial sums so the compiler can vectorize without reassociating a single chain.
inline float dot(const float* a, const float* b, int n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k)
            acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i)
        s += a[i] * b[i];
    return s;
}

inline float silu(float x) {
    return x / (1.0f + std::exp(-x));
}

// Below this many multiply-adds, waking the worker threads costs more than it saves.
constexpr double parallel_attention_min_work = 65536;

} // namespace

// ---- Construction -------------------------------------------------------------------------------------
transformer::transformer(std::shared_ptr<const model_weights> weights, int threads)
    : m_weights(std::move(weights)), m_pool(threads) {
    const auto& g = geometry();
    if (g.head_dim % 2 != 0)
        throw unsupported_error(path_string(m_weights->folder()),
                                "RoPE needs an even head_dim, got " + std::to_string(g.head_dim));
    m_inv_freq.resize(std::size_t(g.head_dim / 2));
    for (int i = 0; i < g.head_dim / 2; ++i)
        m_inv_freq[std::size_t(i)] = static_cast<float>(std::pow(g.rope_theta, -2.0 * i / g.head_dim));
    m_scores.resize(std::size_t(m_pool.size()));
}

// ---- Attention ----------------------------------------------------------------------------------------
// One work item = one token and one KV head: the item computes the `group` query heads that share the KV
// head, so each cached key/value vector is read once per group rather than once per query head.
void transformer::attention(const kv_cache& cache, int layer, const token_plan& plan, int n) {
    const auto& g = geometry();
    const int hd = g.head_dim, kvh = g.num_kv_heads, group = g.num_heads / g.num_kv_heads;
    const int bs = cache.block_size();
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    const std::size_t q_stride = std::size_t(g.num_heads) * hd;

    double work = 0;
    for (int t = 0; t < n; ++t)
        work += double(plan.position[std::size_t(t)] + 1) * g.num_heads * hd * 2;
    const std::size_t items = std::size_t(n) * std::size_t(kvh);

    auto item = [&](std::size_t it, int worker) {
        const int t = static_cast<int>(it / std::size_t(kvh)), kv = static_cast<int>(it % std::size_t(kvh));
        const int ctx = plan.position[std::size_t(t)] + 1; // causal: positions 0..p of this sequence
        const std::span<const int> blocks = plan.blocks[std::size_t(t)];
        std::vector<float>& scores = m_scores[std::size_t(worker)]; // [group, ctx]
        if (scores.size() < std::size_t(group) * std::size_t(ctx)) scores.resize(std::size_t(group) * ctx);
        const float* q = m_q.data() + std::size_t(t) * q_stride + std::size_t(kv) * group * hd;

        // Scores q·k / sqrt(d), walking the sequence's blocks in position order.
        for (int j0 = 0, b = 0; j0 < ctx; j0 += bs, ++b) {
            const float* kb = cache.keys(layer, blocks[std::size_t(b)]) + std::size_t(kv) * bs * hd;
            const int len = std::min(bs, ctx - j0);
            for (int j = 0; j < len; ++j)
                for (int h = 0; h < group; ++h)
                    scores[std::size_t(h) * ctx + j0 + j] =
                        dot(q + std::size_t(h) * hd, kb + std::size_t(j) * hd, hd) * scale;
        }
        // Softmax per query head.
        for (int h = 0; h < group; ++h) {
            float* s = scores.data() + std::size_t(h) * ctx;
            const float mx = *std::max_element(s, s + ctx);
            float sum = 0;
            for (int j = 0; j < ctx; ++j) {
                s[j] = std::exp(s[j] - mx);
                sum += s[j];
            }
            const float inv = 1.0f / sum;
            for (int j = 0; j < ctx; ++j)
                s[j] *= inv;
        }
        // Weighted sum of values.
        float* out = m_att.data() + std::size_t(t) * q_stride + std::size_t(kv) * group * hd;
        std::fill(out, out + std::size_t(group) * hd, 0.0f);
        for (int j0 = 0, b = 0; j0 < ctx; j0 += bs, ++b) {
            const float* vb = cache.values(layer, blocks[std::size_t(b)]) + std::size_t(kv) * bs * hd;
            const int len = std::min(bs, ctx - j0);
            for (int j = 0; j < len; ++j) {
                const float* v = vb + std::size_t(j) * hd;
                for (int h = 0; h < group; ++h) {
                    const float p = scores[std::size_t(h) * ctx + j0 + j];
                    float* o = out + std::size_t(h) * hd;
                    for (int i = 0; i < hd; ++i)
                        o[i] += p * v[i];
                }
            }
        }
    };
    if (work < parallel_attention_min_work) {
        for (std::size_t i = 0; i < items; ++i)
            item(i, 0);
    } else {
        m_pool.run(items, item);
    }
}

// ---- One step -----------------------------------------------------------------------------------------
step_logits transformer::forward(kv_cache& cache, std::span<const sequence_step> batch,
                                 AdapterDelta* adapters) {
    const auto& g = geometry();
    const model_weights& w = *m_weights;
    // Validate the whole step and check capacity before changing anything (step_layout.hpp).
    step_layout layout = plan_forward_step(cache, w, batch);
    const int n = layout.tokens;
    step_logits result;
    result.vocab = g.vocab_size;
    result.first_row.push_back(0);
    if (n == 0) return result;

    reserve_forward_step(cache, batch, layout);
    result.first_row = layout.first_row;
    token_plan plan;
    plan.position = layout.position;
    plan.blocks.reserve(std::size_t(n));
    for (const int b : layout.batch_index)
        plan.blocks.push_back(cache.block_table(batch[std::size_t(b)].seq_id));

    // Scratch sized for this step.
    const int d = g.hidden_size, hd = g.head_dim, half = hd / 2, ffn = g.intermediate_size;
    const int q_dim = g.num_heads * hd, kv_dim = g.num_kv_heads * hd;
    const std::size_t un = std::size_t(n);
    auto grow = [](std::vector<float>& v, std::size_t size) {
        if (v.size() < size) v.resize(size);
    };
    grow(m_x, un * d);
    grow(m_xn, un * d);
    grow(m_q, un * q_dim);
    grow(m_k, un * kv_dim);
    grow(m_v, un * kv_dim);
    grow(m_att, un * q_dim);
    grow(m_tmp, un * d);
    grow(m_gate, un * ffn);
    grow(m_up, un * ffn);
    grow(m_cos, un * half);
    grow(m_sin, un * half);

    // Embeddings and the RoPE angles of every token (angles computed in double, stored as float).
    for (int t = 0; t < n; ++t) {
        w.embed.row_to_f32(layout.token[std::size_t(t)], m_x.data() + std::size_t(t) * d);
        const double p = plan.position[std::size_t(t)];
        for (int i = 0; i < half; ++i) {
            const double angle = p * double(m_inv_freq[std::size_t(i)]);
            m_cos[std::size_t(t) * half + i] = static_cast<float>(std::cos(angle));
            m_sin[std::size_t(t) * half + i] = static_cast<float>(std::sin(angle));
        }
    }

    const float eps = static_cast<float>(g.rms_norm_eps);
    const std::span<const int> slots = layout.adapter;
    const int bs = cache.block_size();
    for (int l = 0; l < g.num_layers; ++l) {
        const layer_weights& L = w.layers[std::size_t(l)];

        // Attention block.
        rms_norm(m_x.data(), L.input_norm.f32(), m_xn.data(), n, d, eps);
        project(L[module_kind::q_proj], l, module_kind::q_proj, m_xn.data(), m_q.data(), n, adapters, slots,
                &m_pool);
        project(L[module_kind::k_proj], l, module_kind::k_proj, m_xn.data(), m_k.data(), n, adapters, slots,
                &m_pool);
        project(L[module_kind::v_proj], l, module_kind::v_proj, m_xn.data(), m_v.data(), n, adapters, slots,
                &m_pool);
        apply_rope(m_q.data(), n, g.num_heads, hd, m_cos.data(), m_sin.data());
        apply_rope(m_k.data(), n, g.num_kv_heads, hd, m_cos.data(), m_sin.data());
        // Write this step's keys and values first: a token attends to the new tokens before it too.
        for (int t = 0; t < n; ++t) {
            const int p = plan.position[std::size_t(t)];
            const int block = plan.blocks[std::size_t(t)][std::size_t(p / bs)], off = p % bs;
            float* kb = cache.keys(l, block);
            float* vb = cache.values(l, block);
            for (int h = 0; h < g.num_kv_heads; ++h) {
                const float* ks = m_k.data() + std::size_t(t) * kv_dim + std::size_t(h) * hd;
                const float* vs = m_v.data() + std::size_t(t) * kv_dim + std::size_t(h) * hd;
                std::copy(ks, ks + hd, kb + (std::size_t(h) * bs + off) * hd);
                std::copy(vs, vs + hd, vb + (std::size_t(h) * bs + off) * hd);
            }
        }
        attention(cache, l, plan, n);
        project(L[module_kind::o_proj], l, module_kind::o_proj, m_att.data(), m_tmp.data(), n, adapters,
                slots, &m_pool);
        for (std::size_t i = 0; i < un * d; ++i)
            m_x[i] += m_tmp[i];

        // MLP block: down(silu(gate(x)) * up(x)).
        rms_norm(m_x.data(), L.post_attention_norm.f32(), m_xn.data(), n, d, eps);
        project(L[module_kind::gate_proj], l, module_kind::gate_proj, m_xn.data(), m_gate.data(), n, adapters,
                slots, &m_pool);
        project(L[module_kind::up_proj], l, module_kind::up_proj, m_xn.data(), m_up.data(), n, adapters,
                slots, &m_pool);
        for (std::size_t i = 0; i < un * ffn; ++i)
            m_gate[i] = silu(m_gate[i]) * m_up[i];
        project(L[module_kind::down_proj], l, module_kind::down_proj, m_gate.data(), m_tmp.data(), n,
                adapters, slots, &m_pool);
        for (std::size_t i = 0; i < un * d; ++i)
            m_x[i] += m_tmp[i];
    }

    // Final norm and lm_head, only on the rows whose logits are returned.
    const int rows = static_cast<int>(layout.out_rows.size());
    for (int r = 0; r < rows; ++r)
        rms_norm(m_x.data() + std::size_t(layout.out_rows[std::size_t(r)]) * d, w.final_norm.f32(),
                 m_xn.data() + std::size_t(r) * d, 1, d, eps);
    result.values.resize(std::size_t(rows) * std::size_t(g.vocab_size));
    matmul_transposed(w.lm_head, m_xn.data(), result.values.data(), rows, &m_pool);

    commit_forward_step(cache, batch, layout);
    return result;
}

} // namespace lorafleet::serve
