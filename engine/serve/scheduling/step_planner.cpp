// Scheduling rules of the serving engine (see step_planner.hpp).
#include "engine/serve/scheduling/step_planner.hpp"

#include <algorithm>

namespace lorafleet::serve {

int admit_count(std::span<const int> need_blocks, int free_blocks, int free_running) {
    int n = 0;
    for (int need : need_blocks) {
        if (n >= free_running || need > free_blocks) break; // FIFO: nobody overtakes the head
        free_blocks -= need;
        ++n;
    }
    return n;
}

std::vector<planned_sequence> plan_step(std::span<const plan_candidate> candidates, int max_batch_tokens,
                                        int prefill_chunk) {
    std::vector<int> tokens(candidates.size(), 0);
    int budget = std::max(1, max_batch_tokens);
    const int chunk = std::max(1, prefill_chunk);
    for (std::size_t i = 0; i < candidates.size() && budget > 0; ++i)
        if (candidates[i].prompt_left <= 0) {
            tokens[i] = 1;
            --budget;
        }
    for (std::size_t i = 0; i < candidates.size() && budget > 0; ++i)
        if (candidates[i].prompt_left > 0) {
            tokens[i] = std::min({candidates[i].prompt_left, chunk, budget});
            budget -= tokens[i];
        }
    std::vector<planned_sequence> plan;
    for (std::size_t i = 0; i < candidates.size(); ++i)
        if (tokens[i] > 0) plan.push_back({static_cast<int>(i), tokens[i]});
    return plan;
}

std::vector<int> plan_slots(std::span<const plan_candidate> candidates,
                            std::span<const planned_sequence> plan) {
    std::vector<int> slots;
    for (const planned_sequence& p : plan) {
        const int s = candidates[std::size_t(p.index)].slot;
        if (s >= 0 && std::find(slots.begin(), slots.end(), s) == slots.end()) slots.push_back(s);
    }
    return slots;
}

} // namespace lorafleet::serve
