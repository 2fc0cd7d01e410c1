// cuda_transformer (see the header): validate and reserve exactly as transformer.cpp does, flatten the
// step into the arrays kernels::device_step wants (tokens, positions, per-token offsets into the
// concatenated block tables, output rows, adapter slots), run it on the device, then commit the lengths.
#include "engine/serve/cuda_transformer.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <unordered_map>

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
    const model_weights& w = *m_weights;
    if (cache.layers() != g.num_layers || cache.kv_heads() != g.num_kv_heads ||
        cache.head_dim() != g.head_dim)
        throw usage_error("forward", "the kv cache was made for a different model geometry");

    // Validate the whole step and check capacity before changing anything (as transformer::forward).
    std::unordered_map<int, int> first_pos;
    int n = 0, extra_blocks = 0, released_blocks = 0;
    for (const sequence_step& s : batch) {
        const std::string where = "sequence " + std::to_string(s.seq_id);
        if (!cache.has_sequence(s.seq_id)) throw usage_error(where, "is not in the kv cache");
        if (s.tokens.empty()) throw usage_error(where, "a step needs at least one new token");
        if (!s.positions.empty() && s.positions.size() != s.tokens.size())
            throw usage_error(where, "positions and tokens differ in length");
        const int len = cache.length(s.seq_id);
        const int first = s.positions.empty() ? len : s.positions[0];
        for (std::size_t i = 0; i < s.positions.size(); ++i)
            if (s.positions[i] != first + int(i)) throw usage_error(where, "positions must be consecutive");
        if (first < 0 || first > len)
            throw usage_error(where, "first position " + std::to_string(first) + " skips past the " +
                                         std::to_string(len) + " cached tokens");
        const int end = first + static_cast<int>(s.tokens.size());
        if (end > w.max_context())
            throw usage_error(where, "reaches position " + std::to_string(end - 1) +
                                         ", beyond the model's context of " +
                                         std::to_string(w.max_context()) + " tokens");
        for (int tok : s.tokens)
            if (tok < 0 || tok >= g.vocab_size)
                throw usage_error(where, "token id " + std::to_string(tok) + " is outside the vocabulary (" +
                                             std::to_string(g.vocab_size) + ")");
        if (!first_pos.emplace(s.seq_id, first).second) throw usage_error(where, "appears twice in one step");
        if (end > cache.max_tokens())
            throw kv_capacity_error(where + " needs " + std::to_string(end) +
                                        " tokens, but the whole cache holds " +
                                        std::to_string(cache.max_tokens()),
                                    true);
        const int owned = static_cast<int>(cache.block_table(s.seq_id).size());
        const int kept = std::min(owned, cache.blocks_for(first));
        released_blocks += owned - kept;
        extra_blocks += std::max(0, cache.blocks_for(end) - kept);
        n += static_cast<int>(s.tokens.size());
    }
    if (extra_blocks > cache.free_blocks() + released_blocks)
        throw kv_capacity_error("the step needs " + std::to_string(extra_blocks) + " more blocks, only " +
                                    std::to_string(cache.free_blocks() + released_blocks) + " are free",
                                false);
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

    // Snapshot of the block tables before the step (restored if the device fails).
    std::vector<int> old_length;
    for (const sequence_step& s : batch)
        old_length.push_back(cache.length(s.seq_id));
    for (const sequence_step& s : batch)
        cache.truncate(s.seq_id, first_pos[s.seq_id]);
    for (const sequence_step& s : batch)
        cache.reserve(s.seq_id, first_pos[s.seq_id] + static_cast<int>(s.tokens.size()));

    m_tokens.clear();
    m_positions.clear();
    m_table_offset.clear();
    m_tables.clear();
    m_out_rows.clear();
    m_adapter.clear();
    bool any_adapter = false;
    for (const sequence_step& s : batch) {
        const int first = first_pos[s.seq_id];
        const std::span<const int> blocks = cache.block_table(s.seq_id);
        const int offset = static_cast<int>(m_tables.size());
        m_tables.insert(m_tables.end(), blocks.begin(), blocks.end());
        for (std::size_t i = 0; i < s.tokens.size(); ++i) {
            if (s.all_logits || i + 1 == s.tokens.size())
                m_out_rows.push_back(static_cast<int>(m_tokens.size()));
            m_tokens.push_back(s.tokens[i]);
            m_positions.push_back(first + static_cast<int>(i));
            m_table_offset.push_back(offset);
            m_adapter.push_back(s.adapter);
            any_adapter = any_adapter || s.adapter >= 0;
        }
        result.first_row.push_back(static_cast<int>(m_out_rows.size()));
    }
    kernels::device_step st;
    st.n = n;
    st.tokens = m_tokens.data();
    st.positions = m_positions.data();
    st.table_offset = m_table_offset.data();
    st.tables = m_tables.data();
    st.tables_len = static_cast<int>(m_tables.size());
    st.out_rows = m_out_rows.data();
    st.rows = static_cast<int>(m_out_rows.size());
    st.token_adapter = any_adapter && adapters ? m_adapter.data() : nullptr;
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
    for (const sequence_step& s : batch)
        cache.set_length(s.seq_id, first_pos[s.seq_id] + static_cast<int>(s.tokens.size()));
    return result;
}

} // namespace lorafleet::serve
