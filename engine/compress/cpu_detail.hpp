// Internal building blocks of CpuBackend shared by its translation units (not a public API): access
// to one "side" of a module (the U side works with B_i, the V side with A_i^T), the low-width factors
// L_i of the per-adapter PSD weights, and the top-r subspace solvers of compress_backend.hpp's
// eigen_strategy.
#pragma once

#include "engine/compress/compress_backend.hpp"
#include "engine/compress/dense.hpp"
#include "engine/compress/module_batch.hpp"
#include "engine/compress/parallel.hpp"
#include "engine/compress/random.hpp"

#include <span>
#include <vector>

namespace lorafleet::compress::detail {

// One side of the factored problem. U side: T_i = B_i [d_out, r_i]; V side: T_i = A_i^T [d_in, r_i].
// T_i = op(stored(pos), how()); T_i^T = op(stored(pos), how_t()).
struct side_access {
    const module_batch* batch = nullptr;
    bool u_side = true;

    std::int64_t dim() const { return u_side ? batch->d_out : batch->d_in; }
    view stored(std::size_t pos) const { return u_side ? batch->b_t(pos) : batch->a_t(pos); }
    op how() const { return u_side ? op::t : op::n; }
    op how_t() const { return u_side ? op::n : op::t; }
};

// sum of r_i over `members` (as double: it feeds flop estimates for thread_pool::parallel_for).
double sum_rank(const module_batch& batch, std::span<const std::size_t> members);
// G = X^T X [m, m] (transpose_first) or G += X X^T [d, d], as column blocks of one GEMM per worker.
void parallel_gram(thread_pool& pool, const matrix& x, bool transpose_first, matrix& g);

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
// The same from P^T [c, r_i] given as a view (avoids a transpose when the data is stored as P^T).
matrix make_factor_t(view pt, double w);
// Sum over members of T_i Z_i [d, Z_i.cols] (Z_i [r_i, c], all the same c), in parallel.
matrix accumulate_side(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
                       const std::vector<matrix>& z, std::int64_t cols);

// Resolves `automatic` by the flop model of compress_backend.hpp; `sum_rank` = sum r_i, `sum_width` =
// sum of factor widths. Also demotes `subspace` to an exact strategy when 2 r > d (Rayleigh-Ritz needs a
// 2r-dimensional block).
eigen_strategy choose_strategy(eigen_strategy requested, std::int64_t d, std::int64_t r,
                               std::int64_t sum_rank, std::int64_t sum_width, int iterations);

// Orthonormal [d, r] basis of the dominant r-dimensional eigenspace of M = sum_i T_i L_i L_i^T T_i^T
// (members' factors in `factors`, same order). Exact strategies ignore `warm`; `subspace` starts from
// `warm` (or a random basis) and runs `iterations` Rayleigh-Ritz steps. When M has rank < r the extra
// columns are arbitrary orthonormal directions drawn from `fill`.
matrix top_subspace(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
                    const std::vector<matrix>& factors, std::int64_t r, eigen_strategy strategy,
                    const matrix* warm, int iterations, rng& fill);

// Per-member products with a basis, in parallel: out[k] = T_{members[k]}^T X  [r_i, X.cols].
std::vector<matrix> project_side(thread_pool& pool, const side_access& side,
                                 std::span<const std::size_t> members, const matrix& x);

// Norms of the members (from batch.norms2 when cached, else computed).
std::vector<double> member_norms2(thread_pool& pool, const module_batch& batch,
                                  std::span<const std::size_t> members);

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
