// plan_forward_step / reserve_forward_step / commit_forward_step (see step_layout.hpp). The checks run in
// a fixed order per sequence so a step with several faults always reports the same one.
#include "engine/serve/model/step_layout.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <string>
#include <unordered_set>

namespace lorafleet::serve {

step_layout plan_forward_step(const kv_cache& cache, const model_weights& w,
                              std::span<const sequence_step> batch) {
    const auto& g = w.geometry();
    if (cache.layers() != g.num_layers || cache.kv_heads() != g.num_kv_heads ||
        cache.head_dim() != g.head_dim)
        throw usage_error("forward", "the kv cache was made for a different model geometry");

    step_layout layout;
    layout.first.reserve(batch.size());
    std::unordered_set<int> seen;
    int extra_blocks = 0, released_blocks = 0;
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
        if (!seen.insert(s.seq_id).second) throw usage_error(where, "appears twice in one step");
        if (end > cache.max_tokens())
            throw kv_capacity_error(where + " needs " + std::to_string(end) +
                                        " tokens, but the whole cache holds " +
                                        std::to_string(cache.max_tokens()),
                                    true);
        const int owned = static_cast<int>(cache.block_table(s.seq_id).size());
        const int kept = std::min(owned, cache.blocks_for(first));
        released_blocks += owned - kept;
        extra_blocks += std::max(0, cache.blocks_for(end) - kept);
        layout.tokens += static_cast<int>(s.tokens.size());
        layout.first.push_back(first);
    }
    if (extra_blocks > cache.free_blocks() + released_blocks)
        throw kv_capacity_error("the step needs " + std::to_string(extra_blocks) + " more blocks, only " +
                                    std::to_string(cache.free_blocks() + released_blocks) + " are free",
                                false);
    return layout;
}

void reserve_forward_step(kv_cache& cache, std::span<const sequence_step> batch, step_layout& layout) {
    // Rewinds first (they release blocks), then reservations: plan_forward_step guarantees they succeed.
    for (std::size_t b = 0; b < batch.size(); ++b)
        cache.truncate(batch[b].seq_id, layout.first[b]);
    for (std::size_t b = 0; b < batch.size(); ++b)
        cache.reserve(batch[b].seq_id, layout.first[b] + static_cast<int>(batch[b].tokens.size()));

    const std::size_t n = std::size_t(layout.tokens);
    layout.token.clear();
    layout.position.clear();
    layout.batch_index.clear();
    layout.adapter.clear();
    layout.out_rows.clear();
    layout.first_row.assign(1, 0);
    layout.token.reserve(n);
    layout.position.reserve(n);
    layout.batch_index.reserve(n);
    layout.adapter.reserve(n);
    for (std::size_t b = 0; b < batch.size(); ++b) {
        const sequence_step& s = batch[b];
        for (std::size_t i = 0; i < s.tokens.size(); ++i) {
            if (s.all_logits || i + 1 == s.tokens.size())
                layout.out_rows.push_back(static_cast<int>(layout.token.size()));
            layout.token.push_back(s.tokens[i]);
            layout.position.push_back(layout.first[b] + static_cast<int>(i));
            layout.batch_index.push_back(static_cast<int>(b));
            layout.adapter.push_back(s.adapter);
        }
        layout.first_row.push_back(static_cast<int>(layout.out_rows.size()));
    }
}

void commit_forward_step(kv_cache& cache, std::span<const sequence_step> batch, const step_layout& layout) {
    for (std::size_t b = 0; b < batch.size(); ++b)
        cache.set_length(batch[b].seq_id, layout.first[b] + static_cast<int>(batch[b].tokens.size()));
}

} // namespace lorafleet::serve
