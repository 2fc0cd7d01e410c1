// The serving engine's scheduling rules as plain functions over numbers, so they can be read and tested
// apart from the engine: which queued requests start (FIFO admission under the KV block budget), which
// running sequences feed how many tokens in the next step (decode tokens first, then prefill chunks, under
// max_batch_tokens), and in which order their adapters are asked for (first appearance = oldest request).
// Invariants: admission never lets a later request overtake an earlier one that does not fit yet, so the
// head of the queue starts as soon as enough blocks are free (no starvation); a plan never exceeds the token
// budget, gives every planned sequence at least one token and a prefilling one at most prefill_chunk; older
// sequences are served before newer ones of the same kind. Pure functions, any thread.
#pragma once

#include <span>
#include <vector>

namespace lorafleet::serve {

// How many requests from the front of the queue start now. `need_blocks[i]`: KV blocks the i-th queued
// request reserves for its whole life; stops at the first that does not fit `free_blocks` or when
// `free_running` sequences have started.
int admit_count(std::span<const int> need_blocks, int free_blocks, int free_running);

// One running sequence as the planner sees it, in FIFO order (oldest first).
struct plan_candidate {
    int slot = -1;       // adapter slot, -1 = base model
    int prompt_left = 0; // prompt tokens not yet in the cache; 0 = decoding (feeds one token)
};

struct planned_sequence {
    int index = 0;  // into the candidates
    int tokens = 0; // tokens it feeds this step
};

// The step's sequences in candidate order. Decode tokens (one per decoding sequence, oldest first) are
// planned before prefill chunks, so streaming sequences keep their pace while long prompts are prefilled
// with what is left of the budget.
std::vector<planned_sequence> plan_step(std::span<const plan_candidate> candidates, int max_batch_tokens,
                                        int prefill_chunk);

// The distinct adapter slots (>= 0) of a plan, in the order of their first sequence: the priority order
// handed to AdapterProvider::prepare().
std::vector<int> plan_slots(std::span<const plan_candidate> candidates,
                            std::span<const planned_sequence> plan);

} // namespace lorafleet::serve
