// ReferenceBackend (see jd_reference.hpp): the JD algorithms written directly over the module's factors,
// one adapter at a time. Notation: T_i = B_i (U side) or A_i^T (V side); qb_i = B_i^T U [r_i, r],
// pa_i = A_i V [r_i, r], so U^T dW_i V = qb_i^T pa_i.
#include "tests/support/jd_reference.hpp"

#include "engine/compress/random_matrix.hpp"
#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lorafleet::test {

using namespace lorafleet::compress;

namespace {

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

constexpr double max_scratch_floats = 134217728.0; // the exact strategies' scratch limit (512 MiB)
constexpr std::int64_t large_gram_chunk = 1024;

void check_rank(const module_batch& batch, std::int64_t r) {
    const auto cap = std::min(batch.d_out, batch.d_in);
    if (r < 1 || r > cap)
        throw shape_mismatch(batch.name, "joint rank r=" + std::to_string(r) + " is outside [1, " +
                                             std::to_string(cap) + "]");
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

void check_basis(const module_batch& batch, const jd_basis& basis, const char* what) {
    if (basis.empty() || basis.u.rows != batch.d_out || basis.v.rows != batch.d_in ||
        basis.v.cols != basis.u.cols)
        throw shape_mismatch(batch.name, std::string(what) + ": basis does not fit the module");
}

void check_warm(const module_batch& batch, const jd_basis& warm, std::int64_t r) {
    if (warm.u.rows != batch.d_out || warm.v.rows != batch.d_in || warm.u.cols != r || warm.v.cols != r)
        throw shape_mismatch(batch.name, "warm-start basis does not fit rank " + std::to_string(r));
}

std::vector<double> fit_weights(normalization norm, const std::vector<double>& n2) {
    std::vector<double> w(n2.size(), 1.0);
    if (norm == normalization::unit)
        for (std::size_t k = 0; k < w.size(); ++k)
            w[k] = n2[k] > 0.0 ? 1.0 / n2[k] : 0.0;
    return w;
}

// ||dW_i||^2 = tr((B^T B)(A A^T)) in double (the fp32 inputs are exact in double).
double norm2_of(const module_batch& batch, std::size_t pos) {
    const dmatrix bt = to_double(batch.b_t(pos)); // [r_i, d_out]
    const dmatrix at = to_double(batch.a_t(pos)); // [d_in, r_i]
    const dmatrix bb = gemm(op::n, bt.view(), op::t, bt.view());
    const dmatrix aa = gemm(op::t, at.view(), op::n, at.view());
    return std::max(0.0, dot(bb.view(), aa.view()));
}

std::vector<double> member_norms2(const module_batch& batch, std::span<const std::size_t> members) {
    std::vector<double> out(members.size());
    for (std::size_t k = 0; k < members.size(); ++k)
        out[k] = batch.norms2.size() == batch.size() ? batch.norms2[members[k]] : norm2_of(batch, members[k]);
    return out;
}

// L with L L^T = w P^T^T P^T for P^T [c, r_i] given as a view: the transposed R factor of a QR when
// c > r_i, else P itself.
matrix make_factor_t(view pt, double w) {
    if (w == 0.0) return matrix(pt.cols, 0);
    const auto sw = static_cast<float>(std::sqrt(w));
    matrix l = pt.rows > pt.cols ? transpose(qr(copy(pt)).second) : transpose(pt);
    for (auto& x : l.data)
        x *= sw;
    return l;
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

eigen_strategy choose_strategy(eigen_strategy requested, std::int64_t d, std::int64_t r,
                               std::int64_t sum_rank, std::int64_t sum_width, int iterations) {
    const double dd = double(d), rd = double(r), m = double(sum_width), nr = double(sum_rank);
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
    if (small == inf && large == inf) return eigen_strategy::exact_large_gram;
    return small <= large ? eigen_strategy::exact_small_gram : eigen_strategy::exact_large_gram;
}

// M Q for M = sum_i T_i C_i T_i^T (C_i [r_i, r_i], empty = 0).
matrix apply_m(const side_access& side, std::span<const std::size_t> members, const std::vector<matrix>& c,
               const matrix& q) {
    matrix out(side.dim(), q.cols);
    for (std::size_t k = 0; k < members.size(); ++k) {
        if (c[k].empty()) continue;
        const view tv = side.stored(members[k]);
        const matrix s1 = gemm(side.how_t(), tv, op::n, q);
        const matrix s2 = gemm(op::n, c[k], op::n, s1);
        gemm(side.how(), tv, op::n, s2, out.mut(), 1.0f, 1.0f);
    }
    return out;
}

// X = [T_1 L_1 | ... ] for members [first, last).
matrix build_x(const side_access& side, std::span<const std::size_t> members,
               const std::vector<matrix>& factors, std::size_t first, std::size_t last) {
    std::int64_t width = 0;
    for (std::size_t k = first; k < last; ++k)
        width += factors[k].cols;
    matrix x(side.dim(), width);
    std::int64_t off = 0;
    for (std::size_t k = first; k < last; ++k) {
        if (factors[k].cols == 0) continue;
        gemm(side.how(), side.stored(members[k]), op::n, factors[k],
             x.mut().block_cols(off, factors[k].cols));
        off += factors[k].cols;
    }
    return x;
}

matrix fill_and_orthonormalize(const matrix& y, std::int64_t r, random_stream& fill) {
    matrix full(y.rows, r);
    std::copy(y.data.begin(), y.data.end(), full.data.begin());
    for (std::size_t i = y.data.size(); i < full.data.size(); ++i)
        full.data[i] = static_cast<float>(fill.normal());
    return orthonormalize(std::move(full));
}

dmatrix upper_inverse(const matrix& rr, std::int64_t r) {
    dmatrix inv(r, r);
    for (std::int64_t j = 0; j < r; ++j)
        for (std::int64_t i = j; i >= 0; --i) {
            double s = i == j ? 1.0 : 0.0;
            for (std::int64_t k = i + 1; k <= j; ++k)
                s -= static_cast<double>(rr(i, k)) * inv(k, j);
            inv(i, j) = rr(i, i) != 0.0f ? s / rr(i, i) : 0.0;
        }
    return inv;
}

// Orthonormal [d, r] basis of the dominant eigenspace of M = sum_i T_i L_i L_i^T T_i^T.
matrix top_subspace(const side_access& side, std::span<const std::size_t> members,
                    const std::vector<matrix>& factors, std::int64_t r, eigen_strategy strategy,
                    const matrix* warm, int iterations, random_stream& fill) {
    const auto d = side.dim();
    check_shape(r >= 1 && r <= d, "top_subspace", "rank outside [1, d]");
    switch (strategy) {
    case eigen_strategy::exact_small_gram: {
        const matrix x = build_x(side, members, factors, 0, members.size());
        const auto k = std::min(r, x.cols);
        if (k == 0) return fill_and_orthonormalize(matrix(d, 0), r, fill);
        const auto eig = top_eigenvectors(gemm(op::t, x, op::n, x), k);
        return fill_and_orthonormalize(gemm(op::n, x, op::n, eig.vectors), r, fill);
    }
    case eigen_strategy::exact_large_gram: {
        matrix mm(d, d);
        std::size_t first = 0;
        while (first < members.size()) {
            std::size_t last = first;
            std::int64_t width = 0;
            while (last < members.size() && (width == 0 || width + factors[last].cols <= large_gram_chunk))
                width += factors[last++].cols;
            const matrix x = build_x(side, members, factors, first, last);
            if (x.cols > 0) gemm(op::n, x, op::t, x, mm.mut(), 1.0f, 1.0f);
            first = last;
        }
        return top_eigenvectors(std::move(mm), r).vectors;
    }
    case eigen_strategy::subspace: {
        std::vector<matrix> c(factors.size());
        for (std::size_t k = 0; k < factors.size(); ++k)
            if (factors[k].cols > 0) c[k] = gemm(op::n, factors[k], op::t, factors[k]);
        matrix q = warm != nullptr ? *warm : random_orthonormal(d, r, fill);
        matrix mq = apply_m(side, members, c, q);
        for (int it = 0; it < std::max(1, iterations); ++it) {
            // [Q | MQ] = S R; S1 = Q R11^-1, so M S1 = (MQ) R11^-1; Rayleigh-Ritz on span(S).
            matrix z(d, 2 * r);
            std::copy(q.data.begin(), q.data.end(), z.data.begin());
            std::copy(mq.data.begin(), mq.data.end(),
                      z.data.begin() + static_cast<std::ptrdiff_t>(q.data.size()));
            auto [s, rr] = qr(std::move(z));
            matrix ms(d, 2 * r);
            gemm(op::n, mq, op::n, to_float(upper_inverse(rr, r)), ms.mut().block_cols(0, r));
            matrix s2(d, r);
            std::copy(s.col(r), s.col(r) + d * r, s2.data.begin());
            const matrix ms2 = apply_m(side, members, c, s2);
            std::copy(ms2.data.begin(), ms2.data.end(), ms.col(r));
            dmatrix h = to_double(gemm(op::t, s, op::n, ms));
            for (std::int64_t j = 0; j < 2 * r; ++j)
                for (std::int64_t i = j + 1; i < 2 * r; ++i)
                    h(i, j) = h(j, i) = 0.5 * (h(i, j) + h(j, i));
            const matrix e = to_float(top_eigenvectors(std::move(h), r).vectors);
            q = gemm(op::n, s, op::n, e);
            mq = gemm(op::n, ms, op::n, e);
        }
        return q;
    }
    case eigen_strategy::automatic:
        break;
    }
    throw usage_error("top_subspace", "strategy must be resolved before solving");
}

std::vector<matrix> project_side(const side_access& side, std::span<const std::size_t> members,
                                 const matrix& x) {
    std::vector<matrix> out(members.size());
    for (std::size_t k = 0; k < members.size(); ++k)
        out[k] = gemm(side.how_t(), side.stored(members[k]), op::n, x);
    return out;
}

matrix full_core(const matrix& qb, const matrix& pa) {
    return gemm(op::t, qb, op::n, pa);
}

std::vector<double> diag_rhs(view qb, view pa) {
    std::vector<double> b(static_cast<std::size_t>(qb.cols), 0.0);
    for (std::int64_t j = 0; j < qb.cols; ++j)
        for (std::int64_t k = 0; k < qb.rows; ++k)
            b[static_cast<std::size_t>(j)] += static_cast<double>(qb(k, j)) * static_cast<double>(pa(k, j));
    return b;
}

double full_objective(const std::vector<matrix>& qb, const std::vector<matrix>& pa,
                      const std::vector<double>& w) {
    double f = 0.0;
    for (std::size_t k = 0; k < qb.size(); ++k)
        if (w[k] != 0.0) f += w[k] * frobenius2(full_core(qb[k], pa[k]));
    return f;
}

dmatrix hadamard(const dmatrix& a, const dmatrix& b) {
    dmatrix c(a.rows, a.cols);
    for (std::size_t i = 0; i < c.data.size(); ++i)
        c.data[i] = a.data[i] * b.data[i];
    return c;
}

dmatrix gram_d(const matrix& x) {
    return to_double(gemm(op::t, x, op::n, x));
}

// Cholesky with the documented ridge fallback (1e-7 trace / n, then x10 up to 8 times).
dmatrix factor_spd(const dmatrix& g) {
    double trace = 0.0;
    for (std::int64_t i = 0; i < g.rows; ++i)
        trace += g(i, i);
    const double base = (trace > 0.0 ? trace / double(g.rows) : 1.0) * 1e-7;
    dmatrix l = g;
    if (cholesky_factor(l)) return l;
    for (int attempt = 0; attempt < 8; ++attempt) {
        l = g;
        for (std::int64_t i = 0; i < g.rows; ++i)
            l(i, i) += base * std::pow(10.0, attempt);
        if (cholesky_factor(l)) return l;
    }
    throw validation_error("jd_diag", "Gram matrix is not positive definite even with a ridge");
}

std::vector<double> solve_vec(const dmatrix& l, const std::vector<double>& b) {
    dmatrix x(static_cast<std::int64_t>(b.size()), 1);
    std::copy(b.begin(), b.end(), x.data.begin());
    cholesky_solve(l, x);
    return x.data;
}

double quad(const dmatrix& g, const std::vector<double>& s) {
    double q = 0.0;
    for (std::int64_t j = 0; j < g.cols; ++j)
        for (std::int64_t i = 0; i < g.rows; ++i)
            q += s[std::size_t(i)] * g(i, j) * s[std::size_t(j)];
    return q;
}

} // namespace

std::vector<double> ReferenceBackend::norms2(const module_batch& batch) {
    batch.validate();
    std::vector<double> out(batch.size());
    for (std::size_t p = 0; p < batch.size(); ++p)
        out[p] = norm2_of(batch, p);
    return out;
}

jd_fit ReferenceBackend::fit_jd_full(const module_batch& batch, std::span<const std::size_t> members,
                                     const jd_options& options, const jd_basis* warm) {
    batch.validate();
    check_members(batch, members, "fit_jd_full");
    check_rank(batch, options.rank);
    const auto r = options.rank;
    const auto n = members.size();
    const side_access us{&batch, true}, vs{&batch, false};
    const auto norms = member_norms2(batch, members);
    const auto w = fit_weights(options.norm, norms);
    jd_fit fit;
    fit.basis.method = jd_method::full;
    fit.members.assign(members.begin(), members.end());
    for (std::size_t k = 0; k < n; ++k)
        fit.weighted_energy += w[k] * norms[k];
    std::int64_t sum_rank = 0, sum_width = 0;
    for (const auto p : members) {
        sum_rank += batch.adapters[p].rank;
        sum_width += std::min(r, batch.adapters[p].rank);
    }
    const int iters = std::max(1, options.subspace_iterations);
    const auto strat_u = choose_strategy(options.eigen, batch.d_out, r, sum_rank, sum_width, iters);
    const auto strat_v = choose_strategy(options.eigen, batch.d_in, r, sum_rank, sum_width, iters);
    fit.eigen_used = strat_u;
    auto fill = random_stream::derive(options.seed, {0xf111});

    matrix u, v;
    std::vector<matrix> lu(n), lv(n);
    if (warm != nullptr && !warm->empty()) {
        check_warm(batch, *warm, r);
        u = orthonormalize(warm->u);
        v = orthonormalize(warm->v);
    } else if (options.init == jd_init::hosvd) {
        // U from sum_i w_i B_i (A_i A_i^T) B_i^T, V from sum_i w_i A_i^T (B_i^T B_i) A_i.
        for (std::size_t k = 0; k < n; ++k) {
            lu[k] = make_factor_t(batch.a_t(members[k]), w[k]);
            lv[k] = make_factor_t(transpose(batch.b_t(members[k])), w[k]);
        }
        const auto hu = choose_strategy(options.eigen, batch.d_out, r, sum_rank, sum_rank, 3 * iters);
        const auto hv = choose_strategy(options.eigen, batch.d_in, r, sum_rank, sum_rank, 3 * iters);
        u = top_subspace(us, members, lu, r, hu, nullptr, 3 * iters, fill);
        v = top_subspace(vs, members, lv, r, hv, nullptr, 3 * iters, fill);
    } else {
        auto g = random_stream::derive(options.seed, {1});
        u = random_orthonormal(batch.d_out, r, g);
        v = random_orthonormal(batch.d_in, r, g);
    }
    auto qb = project_side(us, members, u);
    auto pa = project_side(vs, members, v);
    double f = full_objective(qb, pa, w);
    fit.objective.push_back(f);
    for (int sweep = 0; sweep < options.max_sweeps; ++sweep) {
        for (std::size_t k = 0; k < n; ++k)
            lu[k] = make_factor(pa[k], w[k]);
        matrix u_new = top_subspace(us, members, lu, r, strat_u, &u, iters, fill);
        qb = project_side(us, members, u_new);
        for (std::size_t k = 0; k < n; ++k)
            lv[k] = make_factor(qb[k], w[k]);
        matrix v_new = top_subspace(vs, members, lv, r, strat_v, &v, iters, fill);
        pa = project_side(vs, members, v_new);
        const double f_new = full_objective(qb, pa, w);
        const double change = std::max(subspace_change(u, u_new), subspace_change(v, v_new));
        u = std::move(u_new);
        v = std::move(v_new);
        fit.objective.push_back(f_new);
        fit.sweeps = sweep + 1;
        const double gain = f_new - f;
        f = f_new;
        if (change < options.tol || gain <= options.objective_tol * std::max(f_new, 1e-300)) {
            fit.converged = true;
            break;
        }
    }
    fit.cores.resize(n);
    for (std::size_t k = 0; k < n; ++k)
        fit.cores[k] = full_core(qb[k], pa[k]);
    fit.basis.u = std::move(u);
    fit.basis.v = std::move(v);
    return fit;
}

jd_fit ReferenceBackend::fit_jd_diag(const module_batch& batch, std::span<const std::size_t> members,
                                     const jd_options& options, const jd_basis* warm) {
    batch.validate();
    check_members(batch, members, "fit_jd_diag");
    check_rank(batch, options.rank);
    const auto r = options.rank;
    const auto n = members.size();
    const side_access us{&batch, true}, vs{&batch, false};
    const auto norms = member_norms2(batch, members);
    const auto w = fit_weights(options.norm, norms);
    jd_fit fit;
    fit.basis.method = jd_method::diag;
    fit.members.assign(members.begin(), members.end());
    for (std::size_t k = 0; k < n; ++k)
        fit.weighted_energy += w[k] * norms[k];
    matrix u, v;
    if (warm != nullptr && !warm->empty()) {
        check_warm(batch, *warm, r);
        u = warm->u;
        v = warm->v;
    } else {
        jd_options full_options = options;
        full_options.method = jd_method::full;
        jd_fit init = fit_jd_full(batch, members, full_options, nullptr);
        fit.eigen_used = init.eigen_used;
        u = std::move(init.basis.u);
        v = std::move(init.basis.v);
    }
    auto qb = project_side(us, members, u);
    auto pa = project_side(vs, members, v);
    std::vector<std::vector<double>> sigma(n);

    // sigma-step: G = (U^T U) o (V^T V), sigma_i = G^-1 diag(U^T dW_i V); returns the objective.
    auto sigma_step = [&]() {
        const dmatrix g = hadamard(gram_d(u), gram_d(v));
        const dmatrix gl = factor_spd(g);
        double obj = 0.0;
        for (std::size_t k = 0; k < n; ++k) {
            const auto b = diag_rhs(qb[k], pa[k]);
            sigma[k] = solve_vec(gl, b);
            double sb = 0.0;
            for (std::int64_t j = 0; j < r; ++j)
                sb += sigma[k][std::size_t(j)] * b[std::size_t(j)];
            obj += w[k] * (norms[k] - 2.0 * sb + quad(g, sigma[k]));
        }
        return obj;
    };
    // X = (sum_i w_i T_i P_i diag(sigma_i)) H^-1, H = sum_i w_i (Y^T Y) o (sigma_i sigma_i^T).
    auto factor_step = [&](const side_access& side, const std::vector<matrix>& p, const matrix& other,
                           matrix& x_out) {
        const dmatrix yy = gram_d(other);
        dmatrix h(r, r);
        matrix rhs(side.dim(), r);
        for (std::size_t k = 0; k < n; ++k) {
            matrix z = p[k];
            for (std::int64_t j = 0; j < r; ++j) {
                const double sj = sigma[k][std::size_t(j)];
                const auto s = static_cast<float>(w[k] * sj);
                for (std::int64_t i = 0; i < z.rows; ++i)
                    z(i, j) *= s;
                if (w[k] != 0.0)
                    for (std::int64_t i = 0; i < r; ++i)
                        h(i, j) += w[k] * yy(i, j) * sigma[k][std::size_t(i)] * sj;
            }
            gemm(side.how(), side.stored(members[k]), op::n, z, rhs.mut(), 1.0f, 1.0f);
        }
        dmatrix x = to_double(rhs);
        cholesky_solve_right(factor_spd(h), x);
        x_out = to_float(x);
        return fit.weighted_energy - 2.0 * dot(x_out.view(), rhs.view()) +
               dot(gram_d(x_out).view(), h.view());
    };

    double obj = sigma_step();
    fit.objective.push_back(obj);
    fit.step_objective.push_back(obj);
    for (int sweep = 0; sweep < options.diag_max_sweeps; ++sweep) {
        if (sweep > 0) fit.step_objective.push_back(sigma_step());
        matrix u_new;
        fit.step_objective.push_back(factor_step(us, pa, v, u_new));
        u = std::move(u_new);
        qb = project_side(us, members, u);
        matrix v_new;
        const double o = factor_step(vs, qb, u, v_new);
        fit.step_objective.push_back(o);
        v = std::move(v_new);
        pa = project_side(vs, members, v);
        for (std::int64_t j = 0; j < r; ++j) { // gauge: unit-norm columns, magnitudes into sigma
            const double a = std::sqrt(frobenius2(u.view().block_cols(j, 1)));
            const double b = std::sqrt(frobenius2(v.view().block_cols(j, 1)));
            if (a == 0.0 || b == 0.0) continue;
            const auto ia = static_cast<float>(1.0 / a), ib = static_cast<float>(1.0 / b);
            for (std::int64_t i = 0; i < u.rows; ++i)
                u(i, j) *= ia;
            for (std::int64_t i = 0; i < v.rows; ++i)
                v(i, j) *= ib;
            for (std::size_t k = 0; k < n; ++k) {
                sigma[k][std::size_t(j)] *= a * b;
                for (std::int64_t i = 0; i < qb[k].rows; ++i)
                    qb[k](i, j) *= ia;
                for (std::int64_t i = 0; i < pa[k].rows; ++i)
                    pa[k](i, j) *= ib;
            }
        }
        fit.objective.push_back(o);
        fit.sweeps = sweep + 1;
        const double prev = obj;
        obj = o;
        if (prev - o <= options.diag_tol * std::max(prev, 1e-300) || o <= 1e-12 * fit.weighted_energy) {
            fit.converged = true;
            break;
        }
    }
    const double final_obj = sigma_step();
    fit.step_objective.push_back(final_obj);
    fit.objective.back() = final_obj;
    fit.cores.resize(n);
    for (std::size_t k = 0; k < n; ++k) {
        fit.cores[k] = matrix(r, 1);
        for (std::int64_t j = 0; j < r; ++j)
            fit.cores[k](j, 0) = static_cast<float>(sigma[k][std::size_t(j)]);
    }
    fit.basis.u = std::move(u);
    fit.basis.v = std::move(v);
    return fit;
}

std::vector<matrix> ReferenceBackend::project(const module_batch& batch, const jd_basis& basis,
                                              std::span<const std::size_t> members) {
    batch.validate();
    check_basis(batch, basis, "project");
    check_positions(batch, members, "project");
    const side_access us{&batch, true}, vs{&batch, false};
    const auto qb = project_side(us, members, basis.u);
    const auto pa = project_side(vs, members, basis.v);
    std::vector<matrix> cores(members.size());
    const dmatrix gl =
        basis.method == jd_method::diag ? factor_spd(hadamard(gram_d(basis.u), gram_d(basis.v))) : dmatrix();
    for (std::size_t k = 0; k < members.size(); ++k) {
        if (basis.method == jd_method::full) {
            cores[k] = full_core(qb[k], pa[k]);
            continue;
        }
        const auto s = solve_vec(gl, diag_rhs(qb[k], pa[k]));
        cores[k] = matrix(basis.rank(), 1);
        for (std::size_t j = 0; j < s.size(); ++j)
            cores[k].data[j] = static_cast<float>(s[j]);
    }
    return cores;
}

dmatrix ReferenceBackend::residuals(const module_batch& batch, std::span<const jd_basis* const> bases,
                                    std::span<const std::size_t> adapters) {
    batch.validate();
    check_positions(batch, adapters, "residuals");
    const auto n = adapters.size();
    const auto nb = static_cast<std::int64_t>(bases.size());
    const auto norms = member_norms2(batch, adapters);
    dmatrix out(static_cast<std::int64_t>(n), nb);
    const side_access us{&batch, true}, vs{&batch, false};
    for (std::int64_t c = 0; c < nb; ++c) {
        const jd_basis* b = bases[std::size_t(c)];
        const bool none = b == nullptr || b->empty();
        if (!none) check_basis(batch, *b, "residuals");
        dmatrix graw, gl;
        if (!none && b->method == jd_method::diag) {
            graw = hadamard(gram_d(b->u), gram_d(b->v));
            gl = factor_spd(graw);
        }
        for (std::size_t k = 0; k < n; ++k) {
            double captured = 0.0;
            if (!none) {
                const matrix qb = gemm(us.how_t(), us.stored(adapters[k]), op::n, b->u);
                const matrix pa = gemm(vs.how_t(), vs.stored(adapters[k]), op::n, b->v);
                if (b->method == jd_method::full) {
                    captured = frobenius2(full_core(qb, pa));
                } else {
                    const auto rhs = diag_rhs(qb, pa);
                    const auto s = solve_vec(gl, rhs);
                    double sb = 0.0;
                    for (std::size_t j = 0; j < s.size(); ++j)
                        sb += s[j] * rhs[j];
                    captured = 2.0 * sb - quad(graw, s);
                }
            }
            out(std::int64_t(k), c) = std::max(0.0, norms[k] - captured);
        }
    }
    return out;
}

std::vector<double> ReferenceBackend::errors(const module_batch& batch, const jd_basis& basis,
                                             std::span<const std::size_t> members,
                                             std::span<const matrix> cores) {
    batch.validate();
    check_basis(batch, basis, "errors");
    check_positions(batch, members, "errors");
    const auto r = basis.rank();
    if (cores.size() != members.size())
        throw shape_mismatch(batch.name, "errors: one core per member expected");
    for (const auto& c : cores)
        if (!(c.rows == r && (c.cols == r || c.cols == 1)))
            throw shape_mismatch(batch.name, "errors: core shape");
    // ||B A - U S V^T||^2 = tr((B^T B)(A A^T)) - 2 <S, (U^T B)(A V)> + tr(U^T U S V^T V S^T), all in double.
    const dmatrix ud = to_double(basis.u), vd = to_double(basis.v);
    const dmatrix uu = gemm(op::t, ud.view(), op::n, ud.view()),
                  vv = gemm(op::t, vd.view(), op::n, vd.view());
    std::vector<double> out(members.size());
    for (std::size_t k = 0; k < members.size(); ++k) {
        const auto pos = members[k];
        const dmatrix bt = to_double(batch.b_t(pos)), at = to_double(batch.a_t(pos));
        const dmatrix ub = gemm(op::t, ud.view(), op::t, bt.view()); // [r, r_i]
        const dmatrix av = gemm(op::t, at.view(), op::n, vd.view()); // [r_i, r]
        const dmatrix m = gemm(op::n, ub.view(), op::n, av.view());
        dmatrix s(r, r);
        if (cores[k].cols == r) {
            s = to_double(cores[k]);
        } else {
            for (std::int64_t j = 0; j < r; ++j)
                s(j, j) = cores[k](j, 0);
        }
        const dmatrix usv = gemm(op::n, gemm(op::n, uu.view(), op::n, s.view()).view(), op::n, vv.view());
        out[k] =
            std::max(0.0, norm2_of(batch, pos) - 2.0 * dot(s.view(), m.view()) + dot(usv.view(), s.view()));
    }
    return out;
}

} // namespace lorafleet::test
