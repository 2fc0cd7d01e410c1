// cuda_transformer (see the header): validate and reserve with step_layout.hpp as transformer.cpp does,
// flatten the step into the arrays kernels::device_step wants (tokens, positions, per-token offsets into the
// concatenated block tables, output rows, adapter slots), run it on the device, then commit the lengths.
#include "engine/serve/cuda_transformer.hpp"

#include "engine/core/error.hpp"
#include "engine/serve/step_layout.hpp"

#include <algorithm>

namespace lorafleet::serve {

void throw_if_failed(const kernels::serve_status& s, const std::string& what) {
    if (s.ok()) return;
    throw backend_unavailable(what, std::string(s.api) + ": " + s.message + " (code " +
                                        std::to_string(s.code) + ")");
}

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

kernels::device_model_source device_source(const model_weights& w) {
    kernels::device_model_source src;
    src.embed = w.embed.data;
    src.final_norm = w.final_norm.data;
    src.lm_head = w.lm_head.data;
    for (const layer_weights& L : w.layers) {
        kernels::device_layer_source l;
        l.input_norm = L.input_norm.data;
        l.post_norm = L.post_attention_norm.data;
        for (int m = 0; m < module_kind_count; ++m) {
            l.weight[m] = L.linear[std::size_t(m)].weight.data;
            l.bias[m] = L.linear[std::size_t(m)].bias.empty() ? nullptr : L.linear[std::size_t(m)].bias.data;
        }
        src.layers.push_back(l);
    }
    return src;
}

cuda_transformer::cuda_transformer(std::shared_ptr<const model_weights> weights)
    : m_weights(std::move(weights)) {
    const auto& g = geometry();
    const std::string where = "cuda forward (" + path_string(m_weights->folder()) + ")";
    if (g.head_dim % 2 != 0)
        throw unsupported_error(where, "RoPE needs an even head_dim, got " + std::to_string(g.head_dim));
    throw_if_failed(kernels::device_transformer::create(device_geometry(g), m_device), where);
    throw_if_failed(m_device->upload(device_source(*m_weights)), where);
}

cuda_transformer::~cuda_transformer() = default;

step_logits cuda_transformer::forward(kv_cache& cache, std::span<const sequence_step> batch,
                                      kernels::device_adapters* adapters) {
    const auto& g = geometry();
    // Validate the whole step and check capacity before changing anything (step_layout.hpp, shared with
    // transformer::forward).
    step_layout layout = plan_forward_step(cache, *m_weights, batch);
    const int n = layout.tokens;
    step_logits result;
    result.vocab = g.vocab_size;
    result.first_row.push_back(0);
    if (n == 0) return result;

    // The device pools mirror this cache.
    if (m_cache != &cache || m_cache_blocks != cache.total_blocks() ||
        m_cache_block_size != cache.block_size()) {
        throw_if_failed(m_device->allocate_kv(cache.total_blocks(), cache.block_size()), "cuda forward");
        m_cache = &cache;
        m_cache_blocks = cache.total_blocks();
        m_cache_block_size = cache.block_size();
    }

    // Lengths before the step (restored if the device fails).
    std::vector<int> old_length;
    for (const sequence_step& s : batch)
        old_length.push_back(cache.length(s.seq_id));
    reserve_forward_step(cache, batch, layout);
    result.first_row = layout.first_row;

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
        m_table_offset.push_back(offset_of[std::size_t(layout.batch_index[std::size_t(t)])]);
        any_adapter = any_adapter || layout.adapter[std::size_t(t)] >= 0;
    }
    kernels::device_step st;
    st.n = n;
    st.tokens = layout.token.data();
    st.positions = layout.position.data();
    st.table_offset = m_table_offset.data();
    st.tables = m_tables.data();
    st.tables_len = static_cast<int>(m_tables.size());
    st.out_rows = layout.out_rows.data();
    st.rows = static_cast<int>(layout.out_rows.size());
    st.token_adapter = any_adapter && adapters ? layout.adapter.data() : nullptr;
    result.values.resize(std::size_t(st.rows) * std::size_t(g.vocab_size));
    const kernels::serve_status status =
        m_device->forward(st, st.token_adapter ? adapters : nullptr, result.values.data());
    if (!status.ok()) {
        // Nothing was committed: return to the lengths before the step (the reservations are released).
        std::size_t b = 0;
        for (const sequence_step& s : batch)
            cache.truncate(s.seq_id, std::min(old_length[b++], cache.length(s.seq_id)));
        throw_if_failed(status, "cuda forward");
    }
    commit_forward_step(cache, batch, layout);
    return result;
}

} // namespace lorafleet::serve
