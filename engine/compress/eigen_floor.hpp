// The rank floor of the exact eigen paths (LinalgOps::top_small_gram / top_large_gram), shared by every
// implementation so that they treat a rank-deficient X = [T_1 L_1 | ...] the same way. X is fp32, so
// eigenvalues of its Gram below eigen_floor_ratio * lambda_1 (singular values below 1e-5 sigma_1, two
// orders above the ~sqrt(d) eps32 sigma_1 rounding noise of an fp32 X) carry no direction: their
// eigenvectors are whatever the rounding left, different per backend, eigensolver and summation order
// (a cluster holding zero-scale or duplicate adapters, or with less total rank than r, hits this).
// Such directions are replaced by FIXED ones: seeded Gaussian vectors (the seed depends only on the
// dimension and the column) orthogonalized in double, twice, against the columns before them.
// Pure functions; any thread.
#pragma once

#include "engine/compress/dense.hpp"

#include <cstdint>
#include <span>

namespace lorafleet::compress {

constexpr double eigen_floor_ratio = 1e-10;

// How many of the DESCENDING eigenvalues lie above the floor (eigen_floor_ratio * values[0], and > 0).
std::int64_t eigen_rank(std::span<const double> descending);

// Columns [keep, cols) of `v` [d, cols] become fixed directions orthonormal to span(v[:, :keep]) and to
// each other, times `scale`; columns [0, keep) are kept as they are (they need not be orthonormal, only
// independent). Requires cols <= d.
void complete_null_columns(dmatrix& v, std::int64_t keep, double scale);

} // namespace lorafleet::compress
