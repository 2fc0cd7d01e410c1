// Choosing a token from one row of logits with a given uniform random number, with exactly the semantics
// of the engine's sampler (engine/serve/scheduling/sampler.cpp), so a device sampler fed the same stream of uniforms
// (random_stream::uniform) picks the same tokens: non-finite logits are never candidates; temperature 0
// or top_k 1 is greedy (argmax, lowest id on ties); otherwise candidates are ordered by (logit desc, id
// asc) whenever top-k cuts or top-p < 1 (ids stay in id order otherwise), the top_k best are kept,
// weights exp((logit - max) / temperature) are computed and summed in double in candidate order, top-p
// keeps the shortest prefix whose mass reaches top_p of the total, and the token is the first candidate
// whose running mass exceeds u * kept mass. The order is a strict total order, so a full sort gives the
// same prefix as the CPU's partial sort. Scratch (caller-owned, no allocation): ids [vocab], prob
// [vocab]. sample_row runs in one thread (a heapsort); the device splits the same steps over a block
// (below). Pure functions: any thread.
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

// Weight of a candidate: exp((logit - max) / temperature) in double.
LORAFLEET_HD double sampling_weight(float logit, float mx, float temperature) {
    return exp(double(logit - mx) / temperature);
}

// The draw over ids[0..n) in candidate order with weights prob[0..n) (ids[i] < 0: not a candidate,
// skipped): the total summed in order, top-p < 1 keeps the shortest prefix whose mass reaches top_p of
// it, and the token is the first candidate whose running mass exceeds u * kept mass (the last kept
// candidate when rounding leaves none). -1 when there is no candidate.
LORAFLEET_HD int sample_from_weights(const int* ids, const double* prob, int n, float top_p, double u) {
    double total = 0;
    for (int i = 0; i < n; ++i)
        if (ids[i] >= 0) total += prob[i];
    int end = n;
    if (top_p < 1.0f) {
        double mass = 0;
        int i = 0;
        while (i < n) {
            const bool candidate = ids[i] >= 0;
            if (candidate) mass += prob[i];
            ++i;
            if (candidate && mass >= double(top_p) * total) break;
        }
        end = i;
        total = mass;
    }
    const double target = u * total;
    double acc = 0;
    int last = -1;
    for (int i = 0; i < end; ++i) {
        if (ids[i] < 0) continue;
        last = ids[i];
        acc += prob[i];
        if (target < acc) return ids[i];
    }
    return last;
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
    for (int i = 0; i < keep; ++i)
        prob[i] = sampling_weight(logits[ids[i]], mx, p.temperature);
    return sample_from_weights(ids, prob, keep, p.top_p, u);
}

// ---- The device's block-parallel pieces (launch_sample_rows) ----------------------------------------
// A row that needs the candidate order (a top-k cut or top-p < 1) is sorted by a bitonic network over
// sampling_sort_size(vocab) slots: slot i starts as i when logit i is a candidate, else -1 (which sorts
// last); the stages (k = 2, 4, ..., size; j = k / 2, ..., 1) run in order, the compare-exchanges of one
// stage in parallel. The weights are then computed in parallel and one thread draws
// (sample_from_weights), so the result equals sample_row's. A row that keeps id order (no cut, top-p 1)
// skips the sort: slots keep -1 for non-candidates, whose zero weight the draw skips.
LORAFLEET_HD int sampling_sort_size(int vocab) {
    int n = 1;
    while (n < vocab)
        n <<= 1;
    return n;
}

LORAFLEET_HD int sampling_slot(const float* logits, int vocab, int i) {
    return i < vocab && finite_logit(logits[i]) ? i : -1;
}

// a comes before b in candidate order; -1 (no candidate) comes after everything.
LORAFLEET_HD bool sampling_before(const float* logits, int a, int b) {
    if (a < 0) return false;
    if (b < 0) return true;
    return sampling_better(logits, a, b);
}

// The compare-exchange of stage (k, j) at slot i (slots i < size; a pair is handled by its lower slot).
LORAFLEET_HD void sampling_bitonic_step(const float* logits, int* ids, int k, int j, int i) {
    const int l = i ^ j;
    if (l <= i) return;
    const int a = ids[i], b = ids[l];
    const bool best_first = (i & k) == 0; // the final stage (k = size) is best first everywhere
    if (best_first ? sampling_before(logits, b, a) : sampling_before(logits, a, b)) {
        ids[i] = b;
        ids[l] = a;
    }
}

} // namespace lorafleet::kernels
