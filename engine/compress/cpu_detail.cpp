// Building blocks of the CPU backend: factor widths, the eigen-strategy cost model and the three top-r
// subspace solvers. Shapes are written as [rows, cols]; every matrix is column-major (dense.hpp).
#include "engine/compress/cpu_detail.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lorafleet::compress::detail {

namespace {

// Largest dense scratch matrix (floats) an exact strategy may allocate: 2^27 floats = 512 MiB.
constexpr double max_scratch_floats = 134217728.0;
// Column width of one chunk of X when accumulating X X^T (exact_large_gram).
constexpr std::int64_t large_gram_chunk = 1024;

// M Q for M = sum_i T_i C_i T_i^T, with C_i [r_i, r_i]; Q [d, c] -> [d, c]. Per-thread accumulators
// are summed in thread order (deterministic).
matrix apply_m(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
               const std::vector<matrix>& c, const matrix& q) {
    const auto d = side.dim();
    std::vector<matrix> acc(static_cast<std::size_t>(pool.size()));
    const double flops =
        4.0 * static_cast<double>(d) * sum_rank(*side.batch, members) * static_cast<double>(q.cols);
    pool.parallel_for(
        members.size(),
        [&](std::size_t b, std::size_t e, int t) {
            auto& a = acc[static_cast<std::size_t>(t)];
            a = matrix(d, q.cols);
            for (std::size_t k = b; k < e; ++k) {
                if (c[k].empty()) continue;
                const view tv = side.stored(members[k]);
                const matrix s1 = gemm(side.how_t(), tv, op::n, q); // [r_i, c]
                const matrix s2 = gemm(op::n, c[k], op::n, s1);     // [r_i, c]
                gemm(side.how(), tv, op::n, s2, a.mut(), 1.0f, 1.0f);
            }
        },
        flops);
    matrix out(d, q.cols);
    for (const auto& a : acc)
        if (!a.empty())
            for (std::size_t i = 0; i < out.data.size(); ++i)
                out.data[i] += a.data[i];
    return out;
}

// X = [T_1 L_1 | ... ] for members [first, last) into a [d, width] matrix.
matrix build_x(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
               const std::vector<matrix>& factors, std::size_t first, std::size_t last) {
    std::vector<std::int64_t> offset(last - first + 1, 0);
    for (std::size_t k = first; k < last; ++k)
        offset[k - first + 1] = offset[k - first] + factors[k].cols;
    matrix x(side.dim(), offset.back());
    double flops = 0.0;
    for (std::size_t k = first; k < last; ++k)
        flops += 2.0 * static_cast<double>(side.dim() * factors[k].rows * factors[k].cols);
    pool.parallel_for(
        last - first,
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t j = b; j < e; ++j) {
                const auto& l = factors[first + j];
                if (l.cols == 0) continue;
                gemm(side.how(), side.stored(members[first + j]), op::n, l,
                     x.mut().block_cols(offset[j], l.cols));
            }
        },
        flops);
    return x;
}

// Appends random directions to `y` [d, k] up to r columns and orthonormalizes.
matrix fill_and_orthonormalize(const matrix& y, std::int64_t r, rng& fill) {
    matrix full(y.rows, r);
    std::copy(y.data.begin(), y.data.end(), full.data.begin());
    for (std::size_t i = y.data.size(); i < full.data.size(); ++i)
        full.data[i] = static_cast<float>(fill.normal());
    return orthonormalize(std::move(full));
}

matrix solve_exact_small(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
                         const std::vector<matrix>& factors, std::int64_t r, rng& fill) {
    const matrix x = build_x(pool, side, members, factors, 0, members.size()); // [d, m]
    const auto m = x.cols;
    const auto k = std::min(r, m);
    if (k == 0) return fill_and_orthonormalize(matrix(side.dim(), 0), r, fill);
    matrix g(m, m);
    parallel_gram(pool, x, true, g); // [m, m] = X^T X
    const auto eig = top_eigenvectors(std::move(g), k);
    const matrix y = gemm(op::n, x, op::n, eig.vectors); // [d, k], column j has norm sqrt(lambda_j)
    return fill_and_orthonormalize(y, r, fill);
}

matrix solve_exact_large(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
                         const std::vector<matrix>& factors, std::int64_t r) {
    const auto d = side.dim();
    matrix mm(d, d);
    std::size_t first = 0;
    while (first < members.size()) {
        std::size_t last = first;
        std::int64_t width = 0;
        while (last < members.size() && (width == 0 || width + factors[last].cols <= large_gram_chunk))
            width += factors[last++].cols;
        const matrix x = build_x(pool, side, members, factors, first, last);
        parallel_gram(pool, x, false, mm); // M += X X^T
        first = last;
    }
    return top_eigenvectors(std::move(mm), r).vectors;
}

// Inverse of the upper triangular r x r leading block of `rr`, in double (back substitution).
dmatrix upper_inverse(const matrix& rr, std::int64_t r) {
    dmatrix inv(r, r);
    for (std::int64_t j = 0; j < r; ++j) {
        for (std::int64_t i = j; i >= 0; --i) {
            double s = i == j ? 1.0 : 0.0;
            for (std::int64_t k = i + 1; k <= j; ++k)
                s -= static_cast<double>(rr(i, k)) * inv(k, j);
            const double diag = rr(i, i);
            inv(i, j) = diag != 0.0 ? s / diag : 0.0;
        }
    }
    return inv;
}

matrix solve_subspace(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
                      const std::vector<matrix>& factors, std::int64_t r, const matrix* warm, int iterations,
                      rng& fill) {
    const auto d = side.dim();
    std::vector<matrix> c(factors.size()); // C_i = L_i L_i^T [r_i, r_i]
    for (std::size_t k = 0; k < factors.size(); ++k)
        if (factors[k].cols > 0) c[k] = gemm(op::n, factors[k], op::t, factors[k]);
    matrix q = warm != nullptr ? *warm : random_orthonormal(d, r, fill);
    check_shape(q.rows == d && q.cols == r, "top_subspace", "warm start has the wrong shape");
    matrix mq = apply_m(pool, side, members, c, q);
    for (int it = 0; it < std::max(1, iterations); ++it) {
        // S R = [Q | M Q]; the first r columns of S span Q, so S1 = Q R11^-1 and M S1 = (M Q) R11^-1:
        // only the r new directions S2 need a product with M.
        matrix z(d, 2 * r);
        std::copy(q.data.begin(), q.data.end(), z.data.begin());
        std::copy(mq.data.begin(), mq.data.end(),
                  z.data.begin() + static_cast<std::ptrdiff_t>(q.data.size()));
        auto [s, rr] = qr(std::move(z));
        const matrix r11inv = to_float(upper_inverse(rr, r));
        matrix ms(d, 2 * r);
        gemm(op::n, mq, op::n, r11inv, ms.mut().block_cols(0, r));
        matrix s2(d, r);
        std::copy(s.col(r), s.col(r) + d * r, s2.data.begin());
        const matrix ms2 = apply_m(pool, side, members, c, s2);
        std::copy(ms2.data.begin(), ms2.data.end(), ms.col(r));
        // Rayleigh-Ritz on span(S): the top-r Ritz vectors beat Q itself (Ky Fan), so F never drops.
        dmatrix h = to_double(gemm(op::t, s, op::n, ms)); // [2r, 2r]
        for (std::int64_t j = 0; j < 2 * r; ++j)
            for (std::int64_t i = j + 1; i < 2 * r; ++i)
                h(i, j) = h(j, i) = 0.5 * (h(i, j) + h(j, i));
        const matrix e = to_float(top_eigenvectors(std::move(h), r).vectors); // [2r, r]
        q = gemm(op::n, s, op::n, e);
        mq = gemm(op::n, ms, op::n, e);
    }
    return q;
}

} // namespace

double sum_rank(const module_batch& batch, std::span<const std::size_t> members) {
    double s = 0.0;
    for (const auto p : members)
        s += static_cast<double>(batch.adapters[p].rank);
    return s;
}

void parallel_gram(thread_pool& pool, const matrix& x, bool transpose_first, matrix& g) {
    const auto n = transpose_first ? x.cols : x.rows; // side of g
    const auto inner = transpose_first ? x.rows : x.cols;
    check_shape(g.rows == n && g.cols == n, "parallel_gram", "output has the wrong shape");
    const auto parts = static_cast<std::size_t>(pool.size());
    const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(inner);
    pool.parallel_for(
        parts,
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t part = b; part < e; ++part) {
                const auto j0 = n * static_cast<std::int64_t>(part) / static_cast<std::int64_t>(parts);
                const auto j1 = n * static_cast<std::int64_t>(part + 1) / static_cast<std::int64_t>(parts);
                if (j1 == j0) continue;
                if (transpose_first) // G[:, j0:j1] = X^T X[:, j0:j1]
                    gemm(op::t, x, op::n, x.view().block_cols(j0, j1 - j0), g.mut().block_cols(j0, j1 - j0));
                else // G[:, j0:j1] += X (X[j0:j1, :])^T
                    gemm(op::n, x, op::t,
                         view{x.data.data() + j0, j1 - j0, x.cols, std::max<std::int64_t>(1, x.rows)},
                         g.mut().block_cols(j0, j1 - j0), 1.0f, 1.0f);
            }
        },
        flops);
}

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
    return make_factor_t(transpose(p), w);
}

matrix make_factor_t(view pt, double w) {
    if (w == 0.0) return matrix(pt.cols, 0);
    const auto sw = static_cast<float>(std::sqrt(w));
    // P^T = Q R with R [r_i, r_i] when c > r_i, so P P^T = R^T R and L = R^T; else L = P.
    matrix l = pt.rows > pt.cols ? transpose(qr(copy(pt)).second) : transpose(pt);
    for (auto& x : l.data)
        x *= sw;
    return l;
}

matrix accumulate_side(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
                       const std::vector<matrix>& z, std::int64_t cols) {
    const auto d = side.dim();
    std::vector<matrix> acc(static_cast<std::size_t>(pool.size()));
    const double flops =
        2.0 * static_cast<double>(d) * sum_rank(*side.batch, members) * static_cast<double>(cols);
    pool.parallel_for(
        members.size(),
        [&](std::size_t b, std::size_t e, int t) {
            auto& a = acc[static_cast<std::size_t>(t)];
            a = matrix(d, cols);
            for (std::size_t k = b; k < e; ++k)
                gemm(side.how(), side.stored(members[k]), op::n, z[k], a.mut(), 1.0f, 1.0f);
        },
        flops);
    matrix out(d, cols);
    for (const auto& a : acc)
        if (!a.empty())
            for (std::size_t i = 0; i < out.data.size(); ++i)
                out.data[i] += a.data[i];
    return out;
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

matrix top_subspace(thread_pool& pool, const side_access& side, std::span<const std::size_t> members,
                    const std::vector<matrix>& factors, std::int64_t r, eigen_strategy strategy,
                    const matrix* warm, int iterations, rng& fill) {
    check_shape(factors.size() == members.size(), "top_subspace", "one factor per member expected");
    check_shape(r >= 1 && r <= side.dim(), "top_subspace",
                "rank " + std::to_string(r) + " for dimension " + std::to_string(side.dim()));
    switch (strategy) {
    case eigen_strategy::exact_small_gram:
        return solve_exact_small(pool, side, members, factors, r, fill);
    case eigen_strategy::exact_large_gram:
        return solve_exact_large(pool, side, members, factors, r);
    case eigen_strategy::subspace:
        return solve_subspace(pool, side, members, factors, r, warm, iterations, fill);
    case eigen_strategy::automatic:
        break;
    }
    throw usage_error("top_subspace", "strategy must be resolved before solving");
}

std::vector<matrix> project_side(thread_pool& pool, const side_access& side,
                                 std::span<const std::size_t> members, const matrix& x) {
    check_shape(x.rows == side.dim(), "project_side",
                "basis rows " + std::to_string(x.rows) + " vs dimension " + std::to_string(side.dim()));
    std::vector<matrix> out(members.size());
    const double flops =
        2.0 * static_cast<double>(side.dim()) * sum_rank(*side.batch, members) * static_cast<double>(x.cols);
    pool.parallel_for(
        members.size(),
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k)
                out[k] = gemm(side.how_t(), side.stored(members[k]), op::n, x);
        },
        flops);
    return out;
}

std::vector<double> member_norms2(thread_pool& pool, const module_batch& batch,
                                  std::span<const std::size_t> members) {
    std::vector<double> out(members.size());
    if (batch.norms2.size() == batch.size()) {
        for (std::size_t k = 0; k < members.size(); ++k)
            out[k] = batch.norms2[members[k]];
        return out;
    }
    double flops = 0.0;
    for (const auto p : members)
        flops += 2.0 * static_cast<double>((batch.d_out + batch.d_in) * batch.adapters[p].rank *
                                           batch.adapters[p].rank);
    pool.parallel_for(
        members.size(),
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k) {
                // tr((B^T B)(A A^T)) in double: inputs are exact in double, so the Grams are accurate.
                const dmatrix bt = to_double(batch.b_t(members[k])); // [r_i, d_out]
                const dmatrix at = to_double(batch.a_t(members[k])); // [d_in, r_i]
                const dmatrix bb = gemm(op::n, bt.view(), op::t, bt.view());
                const dmatrix aa = gemm(op::t, at.view(), op::n, at.view());
                out[k] = std::max(0.0, dot(bb.view(), aa.view()));
            }
        },
        flops);
    return out;
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
