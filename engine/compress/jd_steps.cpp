// Building blocks of OpsBackend's algorithms (see jd_steps.hpp). Shapes are written as [rows, cols];
// every matrix is column-major (dense.hpp).
#include "engine/compress/jd_steps.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lorafleet::compress::detail {

namespace {

// Largest dense scratch matrix (floats) an exact strategy may allocate: 2^27 floats = 512 MiB.
constexpr double max_scratch_floats = 134217728.0;

} // namespace

void check_rank(const module_batch& batch, std::int64_t r) {
    const auto cap = std::min(batch.d_out, batch.d_in);
    if (r < 1 || r > cap)
        throw shape_mismatch(batch.name, "joint rank r=" + std::to_string(r) +
                                             " is outside [1, min(d_out, d_in)=" + std::to_string(cap) + "]");
}

void check_positions(const module_batch& batch, std::span<const std::size_t> positions, const char* what) {
    for (const auto p : positions)
        if (p >= batch.size())
            throw shape_mismatch(batch.name, std::string(what) + ": position " + std::to_string(p) +
                                                 " outside a batch of " + std::to_string(batch.size()));
}

void check_members(const module_batch& batch, std::span<const std::size_t> members, const char* what) {
    if (members.empty()) throw usage_error(batch.name, std::string(what) + ": no members");
    check_positions(batch, members, what);
}

std::vector<double> fit_weights(normalization norm, std::span<const double> member_norms2) {
    std::vector<double> w(member_norms2.size(), 1.0);
    if (norm == normalization::unit)
        for (std::size_t k = 0; k < w.size(); ++k)
            w[k] = member_norms2[k] > 0.0 ? 1.0 / member_norms2[k] : 0.0;
    return w;
}

matrix make_factor(const matrix& p, double w) {
    if (w == 0.0) return matrix(p.rows, 0);
    if (p.cols <= p.rows) {
        matrix l = p;
        const auto sw = static_cast<float>(std::sqrt(w));
        for (auto& x : l.data)
            x *= sw;
        return l;
    }
    // P^T = Q R with R [r_i, r_i] when c > r_i, so P P^T = R^T R and L = R^T.
    matrix l = transpose(qr(transpose(p)).second);
    const auto sw = static_cast<float>(std::sqrt(w));
    for (auto& x : l.data)
        x *= sw;
    return l;
}

eigen_strategy choose_strategy(eigen_strategy requested, std::int64_t d, std::int64_t r,
                               std::int64_t sum_rank, std::int64_t sum_width, int iterations) {
    const double dd = static_cast<double>(d), rd = static_cast<double>(r), m = static_cast<double>(sum_width),
                 nr = static_cast<double>(sum_rank);
    const bool subspace_ok = 2 * r <= d;
    if (requested == eigen_strategy::subspace && !subspace_ok) requested = eigen_strategy::automatic;
    if (requested != eigen_strategy::automatic) return requested;
    const double build = 2.0 * dd * nr * std::min(rd, nr);
    const double inf = std::numeric_limits<double>::infinity();
    const double small =
        dd * m <= max_scratch_floats ? build + dd * m * m + 4.0 * m * m * m + 2.0 * dd * m * rd : inf;
    const double large = dd * dd <= max_scratch_floats ? build + dd * dd * m + 4.0 * dd * dd * dd : inf;
    const double sub =
        subspace_ok ? 2.0 * std::max(1, iterations) * (4.0 * dd * nr * rd + 40.0 * dd * rd * rd) : inf;
    if (sub < small && sub < large) return eigen_strategy::subspace;
    if (small == inf && large == inf) // nothing fits in memory and no 2r block: let the large path try
        return eigen_strategy::exact_large_gram;
    return small <= large ? eigen_strategy::exact_small_gram : eigen_strategy::exact_large_gram;
}

double projector_distance(const matrix& a, const matrix& b) {
    check_shape(a.rows == b.rows && a.cols == b.cols && a.cols > 0, "projector_distance",
                "basis shapes differ");
    const matrix m = gemm(op::t, a, op::n, b);
    matrix e = b;
    gemm(op::n, a, op::n, m, e.mut(), -1.0f, 1.0f);
    const auto eig = top_eigenvectors(to_double(gemm(op::t, e, op::n, e)), 1);
    return std::sqrt(std::max(0.0, eig.values.empty() ? 0.0 : eig.values[0]));
}

matrix full_core(const matrix& qb, const matrix& pa) {
    return gemm(op::t, qb, op::n, pa);
}

std::vector<double> diag_rhs(const matrix& qb, const matrix& pa) {
    check_shape(qb.rows == pa.rows && qb.cols == pa.cols, "diag_rhs", "factor shapes differ");
    std::vector<double> b(static_cast<std::size_t>(qb.cols), 0.0);
    for (std::int64_t j = 0; j < qb.cols; ++j)
        for (std::int64_t k = 0; k < qb.rows; ++k)
            b[static_cast<std::size_t>(j)] += static_cast<double>(qb(k, j)) * static_cast<double>(pa(k, j));
    return b;
}

spd_factor factor_spd(dmatrix g) {
    const auto n = g.rows;
    double trace = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
        trace += g(i, i);
    const double base = (trace > 0.0 ? trace / static_cast<double>(n) : 1.0) * 1e-7;
    spd_factor f;
    f.l = g;
    if (cholesky_factor(f.l)) return f;
    for (int attempt = 0; attempt < 8; ++attempt) {
        f.ridge = base * std::pow(10.0, attempt);
        f.l = g;
        for (std::int64_t i = 0; i < n; ++i)
            f.l(i, i) += f.ridge;
        if (cholesky_factor(f.l)) return f;
    }
    throw validation_error("jd_diag", "Gram matrix is not positive definite even with a ridge (NaN input?)");
}

} // namespace lorafleet::compress::detail
