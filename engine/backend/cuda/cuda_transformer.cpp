// cuda_transformer (see the header): validate and reserve with step_layout.hpp as transformer.cpp does,
// flatten the step into the arrays kernels::device_step wants (tokens, positions, per-token offsets into the
// concatenated block tables, output rows, adapter slots), run it on the device, then commit the lengths.
#include "engine/backend/cuda/cuda_transformer.hpp"

#include "engine/core/error.hpp"
#include "engine/serve/model/step_layout.hpp"

#include <algorithm>
#include <cstdlib>

namespace lorafleet::serve {

kernels::device_model_geometry device_geometry(const io::model_geometry& g) {
    kernels::device_model_geometry d;
    d.hidden = g.hidden_size;
    d.layers = g.num_layers;
    d.heads = g.num_heads;
    d.kv_heads = g.num_kv_heads;
    d.head_dim = g.head_dim;
    d.intermediate = g.intermediate_size;
    d.vocab = g.vocab_size;
    d.rms_eps = static_cast<float>(g.rms_norm_eps);
    d.rope_theta = g.rope_theta;
    return d;
}

// weights-helper: every tensor as stored (bf16/fp16/fp32 in the memory map; norms and biases float32): the
// upload converts per tensor through a bounded staging buffer.
namespace {
kernels::weight_source device_tensor(const weight_tensor& t) {
    kernels::weight_source s;
    s.data = t.data;
    switch (t.dtype) {
    case weight_dtype::f32:
        s.dtype = kernels::weight_f32;
        break;
    case weight_dtype::f16:
        s.dtype = kernels::weight_f16;
        break;
    case weight_dtype::bf16:
        s.dtype = kernels::weight_bf16;
        break;
    }
    return s;
}
} // namespace

kernels::device_model_source device_source(const model_weights& w) {
    kernels::device_model_source src;
    src.embed = device_tensor(w.embed);
    src.final_norm = device_tensor(w.final_norm);
    src.lm_head = device_tensor(w.lm_head);
    src.keep_float32 = w.requested_dtype() == weight_dtype_choice::f32;
    for (const layer_weights& L : w.layers) {
        kernels::device_layer_source l;
        l.input_norm = device_tensor(L.input_norm);
        l.post_norm = device_tensor(L.post_attention_norm);
        for (int m = 0; m < module_kind_count; ++m) {
            l.weight[m] = device_tensor(L.linear[std::size_t(m)].weight);
            l.bias[m] = device_tensor(L.linear[std::size_t(m)].bias); // data null when absent
        }
        src.layers.push_back(l);
    }
    return src;
}

kernels::device_precision parse_device_precision(std::string_view text, const std::string& where) {
    if (text == "bf16" || text == "bfloat16") return kernels::device_precision::bf16;
    if (text == "fp16" || text == "float16") return kernels::device_precision::fp16;
    if (text == "fp32" || text == "float32") return kernels::device_precision::fp32;
    throw usage_error(where, "device precision must be bf16, fp16 or fp32");
}

kernels::device_precision serving_device_precision() {
    const char* v = std::getenv("LORAFLEET_DEVICE_PRECISION");
    if (!v || !*v) return kernels::device_precision::bf16;
    return parse_device_precision(v, "LORAFLEET_DEVICE_PRECISION");
}

cuda_transformer::cuda_transformer(std::shared_ptr<const model_weights> weights,
                                   kernels::device_precision precision)
    : m_weights(std::move(weights)) {
    const auto& g = geometry();
    const std::string where = "cuda forward (" + path_string(m_weights->folder()) + ")";
    if (g.head_dim % 2 != 0)
        throw unsupported_error(where, "RoPE needs an even head_dim, got " + std::to_string(g.head_dim));
    throw_if_failed(kernels::device_transformer::create(device_geometry(g), precision, m_device), where);
    throw_if_failed(m_device->upload(device_source(*m_weights)), where);
}

cuda_transformer::~cuda_transformer() = default;

bool cuda_transformer::begin_step(kv_cache& cache, std::span<const sequence_step> batch,
                                  kernels::device_adapters* adapters, pending_step& p) {
    // Validate the whole step and check capacity before changing anything (step_layout.hpp, shared with
    // transformer::forward).
    p.layout = plan_forward_step(cache, *m_weights, batch);
    const int n = p.layout.tokens;
    if (n == 0) return false;

    // The device pools mirror this cache.
    if (m_cache != &cache || m_cache_blocks != cache.total_blocks() ||
        m_cache_block_size != cache.block_size()) {
        throw_if_failed(m_device->allocate_kv(cache.total_blocks(), cache.block_size()), "cuda forward");
        m_cache = &cache;
        m_cache_blocks = cache.total_blocks();
        m_cache_block_size = cache.block_size();
    }

    // Lengths before the step (restored if the device fails).
    p.old_length.clear();
    for (const sequence_step& s : batch)
        p.old_length.push_back(cache.length(s.seq_id));
    reserve_forward_step(cache, batch, p.layout);

    // Concatenated block tables, each token pointing at its sequence's.
    m_table_offset.clear();
    m_tables.clear();
    std::vector<int> offset_of(batch.size());
    for (std::size_t b = 0; b < batch.size(); ++b) {
        const std::span<const int> blocks = cache.block_table(batch[b].seq_id);
        offset_of[b] = static_cast<int>(m_tables.size());
        m_tables.insert(m_tables.end(), blocks.begin(), blocks.end());
    }
    bool any_adapter = false;
    for (int t = 0; t < n; ++t) {
        m_table_offset.push_back(offset_of[std::size_t(p.layout.batch_index[std::size_t(t)])]);
        any_adapter = any_adapter || p.layout.adapter[std::size_t(t)] >= 0;
    }
    kernels::device_step& st = p.step;
    st = kernels::device_step{};
    st.n = n;
    st.tokens = p.layout.token.data();
    st.positions = p.layout.position.data();
    st.table_offset = m_table_offset.data();
    st.tables = m_tables.data();
    st.tables_len = static_cast<int>(m_tables.size());
    st.out_rows = p.layout.out_rows.data();
    st.rows = static_cast<int>(p.layout.out_rows.size());
    st.token_adapter = any_adapter && adapters ? p.layout.adapter.data() : nullptr;
    return true;
}

void cuda_transformer::end_step(kv_cache& cache, std::span<const sequence_step> batch, const pending_step& p,
                                const kernels::serve_status& status) {
    if (!status.ok()) {
        // Nothing was committed: return to the lengths before the step (the reservations are released).
        std::size_t b = 0;
        for (const sequence_step& s : batch)
            cache.truncate(s.seq_id, std::min(p.old_length[b++], cache.length(s.seq_id)));
        throw_if_failed(status, "cuda forward");
    }
    commit_forward_step(cache, batch, p.layout);
}

step_logits cuda_transformer::forward(kv_cache& cache, std::span<const sequence_step> batch,
                                      kernels::device_adapters* adapters) {
    step_logits result;
    result.vocab = geometry().vocab_size;
    result.first_row.push_back(0);
    pending_step p;
    if (!begin_step(cache, batch, adapters, p)) return result;
    result.first_row = p.layout.first_row;
    result.values.resize(std::size_t(p.step.rows) * std::size_t(result.vocab));
    end_step(cache, batch, p,
             m_device->forward(p.step, p.step.token_adapter ? adapters : nullptr, result.values.data()));
    return result;
}

std::vector<int> cuda_transformer::forward_tokens(kv_cache& cache, std::span<const sequence_step> batch,
                                                  kernels::device_adapters* adapters,
                                                  std::span<const token_choice> choices, int vocab_limit) {
    if (choices.size() != batch.size())
        throw usage_error("cuda forward", "one token choice per sequence of the step is needed");
    std::vector<int> tokens(batch.size(), -1);
    pending_step p;
    if (!begin_step(cache, batch, adapters, p)) return tokens;
    // Row of each sequence's last token; rows nobody wants are picked greedily (cheapest) and dropped.
    const std::size_t rows = std::size_t(p.step.rows);
    std::vector<kernels::sampling_row_params> params(rows);
    std::vector<double> u(rows, 0.0);
    for (std::size_t b = 0; b < batch.size(); ++b) {
        const token_choice& c = choices[b];
        if (!c.wanted) continue;
        const auto r = std::size_t(p.layout.first_row[b + 1] - 1);
        params[r] = {c.temperature, c.top_k, c.top_p};
        u[r] = c.u;
    }
    std::vector<int> picked(rows, -1);
    end_step(cache, batch, p,
             m_device->forward_sample(p.step, p.step.token_adapter ? adapters : nullptr, params.data(),
                                      u.data(), std::max(vocab_limit, 1), picked.data()));
    for (std::size_t b = 0; b < batch.size(); ++b)
        if (choices[b].wanted) tokens[b] = picked[std::size_t(p.layout.first_row[b + 1] - 1)];
    return tokens;
}

} // namespace lorafleet::serve
