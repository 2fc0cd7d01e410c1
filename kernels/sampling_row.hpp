// Choosing a token from one row of logits with a given uniform random number, with exactly the semantics
// of the engine's sampler (engine/serve/sampler.cpp), so a device sampler fed the same stream of uniforms
// (random_stream::uniform) picks the same tokens: non-finite logits are never candidates; temperature 0
// or top_k 1 is greedy (argmax, lowest id on ties); otherwise candidates are ordered by (logit desc, id
// asc) whenever top-k cuts or top-p < 1 (ids stay in id order otherwise), the top_k best are kept,
// weights exp((logit - max) / temperature) are computed and summed in double in candidate order, top-p
// keeps the shortest prefix whose mass reaches top_p of the total, and the token is the first candidate
// whose running mass exceeds u * kept mass. The order is a strict total order, so a full sort gives the
// same prefix as the CPU's partial sort. Scratch (caller-owned, no allocation): ids [vocab], prob
// [vocab]. Runs in one thread per row (a heapsort, O(vocab log vocab)). Pure function: any thread.
#pragma once

#include "kernels/serve_hd.hpp"

#include <cmath>

namespace lorafleet::kernels {

struct sampling_row_params {
    float temperature = 0.0f; // 0: greedy
    int top_k = 0;            // 0: no limit
    float top_p = 1.0f;       // in (0, 1]
};

LORAFLEET_HD bool finite_logit(float x) {
    return x - x == 0.0f; // false for NaN and both infinities (no fast-math in this project)
}

// argmax over finite logits, lowest id on ties; -1 when none is finite.
LORAFLEET_HD int greedy_row(const float* logits, int vocab) {
    int best = -1;
    for (int i = 0; i < vocab; ++i) {
        if (!finite_logit(logits[i])) continue;
        if (best < 0 || logits[i] > logits[best]) best = i;
    }
    return best;
}

// Candidate a comes before b: higher logit, then lower id.
LORAFLEET_HD bool sampling_better(const float* logits, int a, int b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
}

// Restores the heap property below `root` in ids[0..end) (a max-heap under "comes before", so the
// worst candidate is at the root).
LORAFLEET_HD void sampling_sift(const float* logits, int* ids, int root, int end) {
    for (;;) {
        int child = 2 * root + 1;
        if (child >= end) return;
        if (child + 1 < end && sampling_better(logits, ids[child], ids[child + 1])) ++child;
        if (!sampling_better(logits, ids[root], ids[child])) return;
        const int tmp = ids[root];
        ids[root] = ids[child];
        ids[child] = tmp;
        root = child;
    }
}

// Heapsort of ids[0..n) into candidate order (best first): popping the worst to the end each time.
LORAFLEET_HD void sampling_sort(const float* logits, int* ids, int n) {
    for (int i = n / 2 - 1; i >= 0; --i)
        sampling_sift(logits, ids, i, n);
    for (int end = n - 1; end > 0; --end) {
        const int tmp = ids[0];
        ids[0] = ids[end];
        ids[end] = tmp;
        sampling_sift(logits, ids, 0, end);
    }
}

// The chosen token, or -1 when no logit is finite. u in [0, 1).
LORAFLEET_HD int sample_row(const float* logits, int vocab, const sampling_row_params& p, double u, int* ids,
                            double* prob) {
    if (p.temperature == 0.0f || p.top_k == 1) return greedy_row(logits, vocab);
    int keep = 0;
    for (int i = 0; i < vocab; ++i)
        if (finite_logit(logits[i])) ids[keep++] = i;
    if (keep == 0) return -1;
    const bool cut = p.top_k > 0 && p.top_k < keep;
    if (cut || p.top_p < 1.0f) sampling_sort(logits, ids, keep);
    if (cut) keep = p.top_k;

    float mx = -INFINITY;
    for (int i = 0; i < keep; ++i)
        mx = logits[ids[i]] > mx ? logits[ids[i]] : mx;
    double total = 0;
    for (int i = 0; i < keep; ++i) {
        prob[i] = exp(double(logits[ids[i]] - mx) / p.temperature);
        total += prob[i];
    }
    if (p.top_p < 1.0f) {
        double mass = 0;
        int i = 0;
        while (i < keep) {
            mass += prob[i++];
            if (mass >= double(p.top_p) * total) break;
        }
        keep = i;
        total = mass;
    }
    const double target = u * total;
    double acc = 0;
    for (int i = 0; i < keep; ++i) {
        acc += prob[i];
        if (target < acc) return ids[i];
    }
    return ids[keep - 1];
}

} // namespace lorafleet::kernels
