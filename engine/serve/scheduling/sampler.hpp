// Choosing the next token from logits: greedy, or temperature sampling restricted by top-k and top-p,
// driven by our own deterministic RNG (engine/core/random.hpp), so a seed reproduces a generation on
// every platform. Order of the filters (as in HuggingFace): temperature, then top-k, then top-p.
// Invariants: temperature 0 is exactly greedy (argmax, lowest id on ties); top_k = 1 is greedy for any
// temperature; the chosen token always has a finite logit; a sampler's draws depend only on its seed and
// the logits it has been given.
#pragma once

#include "engine/core/random.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace lorafleet::serve {

struct sampling_params {
    float temperature = 0.0f; // 0: greedy; otherwise logits are divided by it
    int top_k = 0;            // 0: no limit
    float top_p = 1.0f;       // nucleus: the smallest set of most likely tokens whose mass reaches top_p
    std::uint64_t seed = 0;

    void validate() const; // usage_error for negative temperature/top_k or top_p outside (0, 1]
    // temperature 0 or top_k 1: the argmax, no uniform drawn.
    bool greedy() const { return temperature == 0.0f || top_k == 1; }
};

// argmax with ties broken towards the lowest id; validation_error when no logit is finite.
int greedy_token(std::span<const float> logits);

// The token `params` choose from `logits` with the uniform u in [0, 1) (ignored when greedy): what
// sampler::sample does after its draw. ids / prob are scratch. validation_error when no logit is finite.
int choose_token(const sampling_params& params, std::span<const float> logits, double u,
                 std::vector<int>& ids, std::vector<double>& prob);

class sampler {
public:
    explicit sampler(const sampling_params& params);
    int sample(std::span<const float> logits);
    const sampling_params& params() const { return m_params; }
    // Greedy (sampling_params::greedy): sample() draws nothing.
    bool greedy() const { return m_params.greedy(); }
    // The uniform the next non-greedy sample() would draw, consumed now (for a pick made elsewhere: on the
    // device that holds the logits, kernels/sampling_row.hpp has the same semantics).
    double draw() { return m_rng.uniform(); }

private:
    sampling_params m_params;
    random_stream m_rng;
    std::vector<int> m_ids;     // [vocab] candidate ids, scratch
    std::vector<double> m_prob; // [vocab] candidate weights, scratch
};

} // namespace lorafleet::serve
