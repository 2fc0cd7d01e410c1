// The Clusters tab's 2-D map of a compressed bank, without widgets: principal component analysis of
// per-adapter features built from the bank, comparable ACROSS clusters (raw cores are not: each cluster
// has its own bases). For a module m, adapter i of cluster c with core S = Σ_i(m) / ||Σ_i(m)|| (diag(σ) for
// JD-Diag) and a fixed seeded Gaussian sketch G_m [d_out, p], H_m [d_in, p]:
//     K_col = (G_mᵀ U_c) S Sᵀ (G_mᵀ U_c)ᵀ,   K_row = (H_mᵀ V_c) Sᵀ S (H_mᵀ V_c)ᵀ      [p, p] each,
// sketches of the normalized column- and row-space Grams ΔW ΔWᵀ and ΔWᵀ ΔW, whose inner products estimate
// <ΔW_i ΔW_iᵀ, ΔW_j ΔW_jᵀ> (large for adapters sharing a subspace, ~0 for unrelated ones). The feature of
// (i, m) is the upper triangles of K_col and K_row (off-diagonals times sqrt 2, so dot products are the
// Frobenius ones), scaled to unit norm; a module the adapter lacks contributes zeros. Modules are sampled
// evenly so that the features stay within `feature_budget` values per adapter.
//
// Invariants: deterministic for a bank (fixed sketch seeds; each PCA axis' sign fixed so that its
// largest-magnitude loading is positive); points are centred (mean 0 on both axes); x carries at least as
// much variance as y. Pure functions, any thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <cstddef>
#include <vector>

namespace lorafleet::analysis {

struct cluster_map {
    std::vector<double> x;        // [adapter] coordinate on the first principal axis
    std::vector<double> y;        // [adapter] coordinate on the second principal axis (0 when dim = 1)
    double explained[2] = {0, 0}; // fraction of the total variance on each axis (0 when there is none)
    std::size_t feature_dim = 0;  // features per adapter that went into the PCA
    std::size_t modules_used = 0; // bank modules that went into the features
};

// Top-2 PCA of the rows of `features` [n, dim] (row-major). Rows are centred first; zero variance gives
// all-zero coordinates. Throws shape_mismatch when features.size() != n * dim.
cluster_map pca_2d(const std::vector<double>& features, std::size_t n, std::size_t dim);

// Sketch width p of the features above.
inline constexpr std::size_t kSketchWidth = 12;

// The features described above, row-major [adapters, dim]; `modules_used` set to the number of bank modules
// sampled. Throws validation_error for a bank whose cores or bases do not match its shape.
std::vector<double> adapter_features(const bank::compressed_bank& bank, std::size_t feature_budget,
                                     std::size_t* dim, std::size_t* modules_used);

// adapter_features + pca_2d.
cluster_map compute_cluster_map(const bank::compressed_bank& bank, std::size_t feature_budget = 640);

} // namespace lorafleet::analysis
