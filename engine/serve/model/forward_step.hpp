// What one forward step takes and returns, shared by every forward pass (transformer.hpp on the CPU,
// cuda_transformer.hpp on a device, forward_pass.hpp the seam between them): the new tokens of each
// sequence, and the logits rows that come back. Plain values; the spans a sequence_step holds must stay
// valid for the forward() call that reads them.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

namespace lorafleet::serve {

// The new tokens of one sequence in one step.
struct sequence_step {
    int seq_id = 0;                 // a sequence added to the kv_cache
    std::span<const int> tokens;    // [n] new token ids, n >= 1
    std::span<const int> positions; // empty: continue at the cached length; else [n] consecutive, with
                                    // positions[0] <= cached length (earlier positions rewind the cache)
    int adapter = -1;               // adapter slot passed to AdapterDelta for these tokens; -1 = base model
    bool all_logits = false;        // logits for every new token, not only the last
};

// How the next token of one sequence is picked from its last logits row when the forward pass itself
// picks it (ForwardPass::forward_tokens): the request's sampling parameters and the uniform its sampler
// drew for this pick (ignored when greedy: temperature 0 or top_k 1). wanted = false: no token is needed
// from this row (a prompt chunk that is not the last, a request that ends without sampling).
struct token_choice {
    bool wanted = false;
    float temperature = 0.0f;
    int top_k = 0;
    float top_p = 1.0f;
    double u = 0.0;
};

// Logits of one step: rows for each sequence in batch order.
struct step_logits {
    int vocab = 0;
    std::vector<float> values;  // [rows, vocab]
    std::vector<int> first_row; // [batch + 1]: sequence b owns rows first_row[b] .. first_row[b + 1] - 1

    int rows() const { return first_row.empty() ? 0 : first_row.back(); }
    std::span<const float> row(int r) const {
        return {values.data() + std::size_t(r) * std::size_t(vocab), std::size_t(vocab)};
    }
    // Logits after the last new token of sequence b.
    std::span<const float> last(int b) const { return row(first_row[std::size_t(b) + 1] - 1); }
};

} // namespace lorafleet::serve
