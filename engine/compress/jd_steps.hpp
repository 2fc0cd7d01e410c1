// Small building blocks of OpsBackend's JD algorithms (ops_backend.cpp) that do not depend on where the
// big products run: argument checks, fit weights, the low-width factors L_i of the per-adapter PSD
// weights, the eigen-strategy cost model of compress_backend.hpp, the r x r core algebra and the
// guarded SPD factorization. Everything here is r x r or r_i x r sized and runs on the calling thread.
// Internal to engine/compress (not a public API).
#pragma once

#include "engine/compress/compress_backend.hpp"
#include "engine/compress/dense.hpp"
#include "engine/compress/module_batch.hpp"

#include <span>
#include <vector>

namespace lorafleet::compress::detail {

// Throws shape_mismatch when r is not in [1, min(d_out, d_in)].
void check_rank(const module_batch& batch, std::int64_t r);
// Throws shape_mismatch for a position outside the batch.
void check_positions(const module_batch& batch, std::span<const std::size_t> positions, const char* what);
// Throws usage_error for an empty member list, shape_mismatch for a position outside the batch.
void check_members(const module_batch& batch, std::span<const std::size_t> members, const char* what);

// Fit weight per member: 1 / ||dW_i||^2 (0 for a zero adapter) for `unit`, 1 for `none`.
std::vector<double> fit_weights(normalization norm, std::span<const double> member_norms2);

// L [r_i, min(r_i, c)] with L L^T = w P P^T for P [r_i, c]: P itself (scaled) when c <= r_i, else the
// transposed R factor of P^T = Q R. Keeps X = [T_i L_i] as narrow as possible.
matrix make_factor(const matrix& p, double w);

// Resolves `automatic` by the flop model of compress_backend.hpp; `sum_rank` = sum r_i, `sum_width` =
// sum of factor widths. Also demotes `subspace` to an exact strategy when 2 r > d (Rayleigh-Ritz needs a
// 2r-dimensional block).
eigen_strategy choose_strategy(eigen_strategy requested, std::int64_t d, std::int64_t r,
                               std::int64_t sum_rank, std::int64_t sum_width, int iterations);

// ||A A^T - B B^T||_2 for orthonormal A, B [d, r] (equal r): the sine of the largest principal angle
// between their spans, as the norm of B - A (A^T B) (1 - sigma_min(A^T B)^2 would lose small angles to
// rounding). The residual of any adapter under a JD-Full basis moves by at most the sum of this distance
// for U and for V, relative to ||dW||^2 (fleet_compressor's residual reuse).
double projector_distance(const matrix& a, const matrix& b);

// JD-Full core (U^T B_i)(A_i V) = qb^T pa for qb = B_i^T U [r_i, r], pa = A_i V [r_i, r].
matrix full_core(const matrix& qb, const matrix& pa);
// JD-Diag right-hand side b_j = sum_k qb(k, j) pa(k, j) = diag(U^T dW V), in double.
std::vector<double> diag_rhs(const matrix& qb, const matrix& pa);

// Small SPD solves with a documented fallback: when `g` is not numerically positive definite, a ridge
// lambda * I with lambda = 1e-7 * (trace / n), then x10 up to 8 times, is added before factoring.
// Returns the factor and the ridge actually used.
struct spd_factor {
    dmatrix l;
    double ridge = 0.0;
};
spd_factor factor_spd(dmatrix g);

} // namespace lorafleet::compress::detail
