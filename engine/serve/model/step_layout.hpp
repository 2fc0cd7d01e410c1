// Planning one forward step against a kv_cache, shared by the CPU and the CUDA forward pass so both accept
// and refuse exactly the same steps with the same errors: plan_forward_step validates the whole step and
// checks capacity without changing anything; reserve_forward_step then rewinds and reserves the step's
// blocks and flattens it token by token (the order every forward pass computes in); commit_forward_step
// sets the sequences' new lengths once the step has been computed.
// Invariants: after plan_forward_step succeeds, reserve_forward_step cannot fail (the capacity check
// counts the blocks rewinds release); a refused step leaves the cache untouched. Plain functions; the
// caller owns the cache (one thread).
#pragma once

#include "engine/serve/model/forward_step.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "engine/serve/model/model_weights.hpp"

#include <span>
#include <vector>

namespace lorafleet::serve {

struct step_layout {
    int tokens = 0;         // new tokens in the whole step
    std::vector<int> first; // [batch] position of each sequence's first new token

    // Filled by reserve_forward_step, one entry per new token in batch order:
    std::vector<int> token;       // token id
    std::vector<int> position;    // its position in its sequence
    std::vector<int> batch_index; // which sequence_step it belongs to
    std::vector<int> adapter;     // adapter slot, -1 = base model
    std::vector<int> out_rows;    // token indices whose logits are returned, in output order
    std::vector<int> first_row;   // [batch + 1] as step_logits::first_row
};

// Throws usage_error for a cache of another geometry or a malformed step (unknown or repeated sequence,
// no tokens, positions that are not consecutive, skip ahead or pass the model's max_context, a token
// outside the vocabulary) and kv_capacity_error when the step does not fit; changes nothing.
step_layout plan_forward_step(const kv_cache& cache, const model_weights& w,
                              std::span<const sequence_step> batch);

// Rewinds every sequence to its first new position, then reserves its blocks through the step's last
// token, and fills the per-token arrays of `layout`. Call right after plan_forward_step on the same batch.
void reserve_forward_step(kv_cache& cache, std::span<const sequence_step> batch, step_layout& layout);

// Records the step's tokens as cached: each sequence's length becomes first + its token count.
void commit_forward_step(kv_cache& cache, std::span<const sequence_step> batch, const step_layout& layout);

} // namespace lorafleet::serve
