// The reassignment step of the clustering alternation (fleet_compressor): given every adapter's total
// relative residual under every cluster's bases, the cluster each adapter goes to next. The rule is
// order-independent and has a margin above the fp32 noise of a backend's residuals, so the CPU and a
// device backend (whose per-module relative residuals differ by ~1e-7 .. 1e-6) resolve near-ties the same
// way:
//   tie(i)  = 1e-6 * totals(i, cur) + 1e-5 * M_i       (M_i: the modules adapter i has)
//   C(i)    = { c : totals(i, c) <= min_c totals(i, c) + tie(i) }
//   next[i] = cur if cur is in C(i), else the lowest index in C(i).
// Also the empty-cluster reseeding (deterministic: the worst-fit adapter of a cluster with >= 2 members,
// the lowest index among equal worst ones).
#pragma once

#include "engine/compress/dense.hpp"

#include <span>
#include <vector>

namespace lorafleet::compress {

// The near-tie margin of an adapter whose total in its current cluster is `own`, summed over `modules`.
double reassignment_margin(double own, int modules);

// `current` [adapter] in [0, totals.cols); totals [adapter, cluster]; module_counts [adapter] (M_i).
// Throws shape_mismatch when the sizes disagree or a label is out of range.
std::vector<int> reassign(std::span<const int> current, const dmatrix& totals,
                          std::span<const int> module_counts);

// Gives every empty cluster (in index order) the adapter with the largest total in its own cluster among
// clusters with >= 2 members (ties within reassignment_margin: the lowest adapter index). Stops when no
// cluster has 2 members.
void reseed_empty_clusters(std::vector<int>& assignment, const dmatrix& totals,
                           std::span<const int> module_counts);

} // namespace lorafleet::compress
