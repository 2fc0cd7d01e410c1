// Sampler implementation: probabilities are computed in double from max-subtracted logits; candidates are
// sorted by (logit descending, id ascending) so ties resolve the same way as greedy.
#include "engine/serve/scheduling/sampler.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>

namespace lorafleet::serve {

void sampling_params::validate() const {
    if (!(temperature >= 0.0f) || !std::isfinite(temperature))
        throw usage_error("sampling", "temperature must be a finite number >= 0");
    if (top_k < 0) throw usage_error("sampling", "top-k must be >= 0");
    if (!(top_p > 0.0f && top_p <= 1.0f)) throw usage_error("sampling", "top-p must be in (0, 1]");
}

int greedy_token(std::span<const float> logits) {
    int best = -1;
    for (std::size_t i = 0; i < logits.size(); ++i) {
        if (!std::isfinite(logits[i])) continue; // NaN and infinities are not scores (masked or broken)
        if (best < 0 || logits[i] > logits[std::size_t(best)]) best = static_cast<int>(i);
    }
    if (best < 0) throw validation_error("sampling", "no finite logit to choose from");
    return best;
}

sampler::sampler(const sampling_params& params) : m_params(params), m_rng(params.seed) {
    m_params.validate();
}

int choose_token(const sampling_params& params, std::span<const float> logits, double u,
                 std::vector<int>& ids, std::vector<double>& prob) {
    if (params.greedy()) return greedy_token(logits);

    // Candidates: finite logits only, best first.
    ids.clear();
    for (std::size_t i = 0; i < logits.size(); ++i)
        if (std::isfinite(logits[i])) ids.push_back(static_cast<int>(i));
    if (ids.empty()) throw validation_error("sampling", "no finite logit to choose from");
    auto better = [&](int a, int b) {
        return logits[std::size_t(a)] != logits[std::size_t(b)]
                   ? logits[std::size_t(a)] > logits[std::size_t(b)]
                   : a < b;
    };
    std::size_t keep = ids.size();
    if (params.top_k > 0 && std::size_t(params.top_k) < keep) {
        keep = std::size_t(params.top_k);
        std::partial_sort(ids.begin(), ids.begin() + std::ptrdiff_t(keep), ids.end(), better);
        ids.resize(keep);
    } else if (params.top_p < 1.0f) {
        std::sort(ids.begin(), ids.end(), better);
    }

    // Softmax of logit / temperature over the candidates.
    float mx = -INFINITY;
    for (int id : ids)
        mx = std::max(mx, logits[std::size_t(id)]);
    prob.resize(keep);
    double total = 0;
    for (std::size_t i = 0; i < keep; ++i) {
        prob[i] = std::exp(double(logits[std::size_t(ids[i])] - mx) / params.temperature);
        total += prob[i];
    }
    // Nucleus: candidates are sorted here whenever top_p < 1; keep the shortest prefix reaching top_p.
    if (params.top_p < 1.0f) {
        double mass = 0;
        std::size_t i = 0;
        while (i < keep) {
            mass += prob[i++];
            if (mass >= double(params.top_p) * total) break;
        }
        keep = i;
        total = mass;
    }
    const double target = u * total;
    double acc = 0;
    for (std::size_t i = 0; i < keep; ++i) {
        acc += prob[i];
        if (target < acc) return ids[i];
    }
    return ids[keep - 1]; // u within rounding of total
}

int sampler::sample(std::span<const float> logits) {
    if (greedy()) return greedy_token(logits);
    // One uniform per non-greedy pick (drawn even when the row turns out to have no candidate: the
    // request fails then, so the stream no longer matters).
    return choose_token(m_params, logits, draw(), m_ids, m_prob);
}

} // namespace lorafleet::serve
