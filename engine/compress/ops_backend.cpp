// OpsBackend (see ops_backend.hpp): JD-Full (HOOI), JD-Diag (ALS), projection, residuals and exact
// errors on one module, all factored (method.md §2-§4, §6), with every product over d or over the fleet
// routed through LinalgOps. Notation: qb_k = B_k^T U [r_k, r], pa_k = A_k V [r_k, r], so
// U^T dW_k V = qb_k^T pa_k.
#include "engine/compress/ops_backend.hpp"

#include "engine/compress/jd_steps.hpp"
#include "engine/compress/parallel.hpp"
#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>

namespace lorafleet::compress {

namespace {

constexpr ops_side U = ops_side::u;
constexpr ops_side V = ops_side::v;

double full_objective(const std::vector<matrix>& qb, const std::vector<matrix>& pa,
                      const std::vector<double>& w) {
    double f = 0.0;
    for (std::size_t k = 0; k < qb.size(); ++k)
        if (w[k] != 0.0) f += w[k] * frobenius2(detail::full_core(qb[k], pa[k]));
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

matrix solve_right(const detail::spd_factor& h, const matrix& rhs) {
    dmatrix x = to_double(rhs);
    cholesky_solve_right(h.l, x);
    return to_float(x);
}

double quad(const dmatrix& g, const std::vector<double>& s) {
    double q = 0.0;
    for (std::int64_t j = 0; j < g.cols; ++j)
        for (std::int64_t i = 0; i < g.rows; ++i)
            q += s[static_cast<std::size_t>(i)] * g(i, j) * s[static_cast<std::size_t>(j)];
    return q;
}

std::vector<double> solve_vec(const detail::spd_factor& g, const std::vector<double>& b) {
    dmatrix x(static_cast<std::int64_t>(b.size()), 1);
    std::copy(b.begin(), b.end(), x.data.begin());
    cholesky_solve(g.l, x);
    return x.data;
}

void check_warm(const module_batch& batch, const jd_basis& warm, std::int64_t r) {
    if (warm.u.rows != batch.d_out || warm.v.rows != batch.d_in || warm.u.cols != r || warm.v.cols != r)
        throw shape_mismatch(batch.name, "warm-start basis U " + std::to_string(warm.u.rows) + "x" +
                                             std::to_string(warm.u.cols) + ", V " +
                                             std::to_string(warm.v.rows) + "x" + std::to_string(warm.v.cols) +
                                             " does not fit rank " + std::to_string(r));
}

void check_basis(const module_batch& batch, const jd_basis& basis, const char* what) {
    if (basis.empty() || basis.u.rows != batch.d_out || basis.v.rows != batch.d_in ||
        basis.v.cols != basis.u.cols)
        throw shape_mismatch(batch.name, std::string(what) + ": basis U " + std::to_string(basis.u.rows) +
                                             "x" + std::to_string(basis.u.cols) + ", V " +
                                             std::to_string(basis.v.rows) + "x" +
                                             std::to_string(basis.v.cols) + " does not fit the module " +
                                             std::to_string(batch.d_out) + "x" + std::to_string(batch.d_in));
}

// L [r_k, w] with L L^T = w * G for a PSD Gram G [r_k, r_k]: the Cholesky factor when G is positive
// definite (the common case, ~r^3/3 flops), else V sqrt(lambda) over the positive eigenvalues (columns
// with lambda <= 0 add nothing to M and are dropped).
matrix factor_from_gram(const matrix& g, double w) {
    if (w == 0.0) return matrix(g.rows, 0);
    dmatrix c = to_double(g);
    if (cholesky_factor(c)) {
        matrix l(g.rows, g.rows);
        const double sw = std::sqrt(w);
        for (std::int64_t j = 0; j < g.rows; ++j)
            for (std::int64_t i = j; i < g.rows; ++i)
                l(i, j) = static_cast<float>(c(i, j) * sw);
        return l;
    }
    const auto eig = top_eigenvectors(to_double(g), g.rows);
    std::int64_t keep = 0;
    while (keep < g.rows && eig.values[static_cast<std::size_t>(keep)] > 0.0)
        ++keep;
    matrix l(g.rows, keep);
    for (std::int64_t j = 0; j < keep; ++j) {
        const double sc = std::sqrt(w * eig.values[static_cast<std::size_t>(j)]);
        for (std::int64_t i = 0; i < g.rows; ++i)
            l(i, j) = static_cast<float>(eig.vectors(i, j) * sc);
    }
    return l;
}

// Appends random directions to `y` [d, k] up to r columns and orthonormalizes (the Householder QR runs
// through the ops, so a device does the O(d r^2) part).
matrix fill_and_orthonormalize(LinalgOps& ops, const matrix& y, std::int64_t r, random_stream& fill) {
    matrix full(y.rows, r);
    std::copy(y.data.begin(), y.data.end(), full.data.begin());
    for (std::size_t i = y.data.size(); i < full.data.size(); ++i)
        full.data[i] = static_cast<float>(fill.normal());
    return ops.qr(std::move(full)).first;
}

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

} // namespace

OpsBackend::OpsBackend(std::string name, std::unique_ptr<LinalgOps> ops)
    : m_name(std::move(name)), m_ops(std::move(ops)) {
    if (!m_ops) throw usage_error("OpsBackend", "no linear algebra implementation");
}

std::vector<double> OpsBackend::working_norms2(const module_batch& batch,
                                               std::span<const std::size_t> members) {
    std::vector<double> out(members.size());
    if (batch.norms2.size() == batch.size()) {
        for (std::size_t k = 0; k < members.size(); ++k)
            out[k] = batch.norms2[members[k]];
        return out;
    }
    // tr((B^T B)(A A^T)) from the exact Grams (double on the host; see LinalgOps::block_grams_exact).
    const auto gb = m_ops->block_grams_exact(U), ga = m_ops->block_grams_exact(V);
    for (std::size_t k = 0; k < members.size(); ++k)
        out[k] = std::max(0.0, dot(gb[k].view(), ga[k].view()));
    return out;
}

std::vector<double> OpsBackend::norms2(const module_batch& batch) {
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    const auto all = all_positions(batch);
    m_ops->select(batch, all);
    module_batch uncached = batch;
    uncached.norms2.clear();
    return working_norms2(uncached, all);
}

matrix OpsBackend::top_subspace(ops_side s, const std::vector<matrix>& factors, std::int64_t r,
                                eigen_strategy strategy, const matrix* warm, int iterations,
                                random_stream& fill) {
    const auto d = m_ops->layout().dim(s);
    check_shape(r >= 1 && r <= d, "top_subspace",
                "rank " + std::to_string(r) + " for dimension " + std::to_string(d));
    switch (strategy) {
    case eigen_strategy::exact_small_gram: {
        std::int64_t m = 0;
        for (const auto& f : factors)
            m += f.cols;
        const auto k = std::min(r, m);
        if (k == 0) return fill_and_orthonormalize(*m_ops, matrix(d, 0), r, fill);
        return fill_and_orthonormalize(*m_ops, m_ops->top_small_gram(s, factors, k), r, fill);
    }
    case eigen_strategy::exact_large_gram:
        return m_ops->top_large_gram(s, factors, r);
    case eigen_strategy::subspace: {
        std::vector<matrix> c(factors.size());
        for (std::size_t k = 0; k < factors.size(); ++k)
            if (factors[k].cols > 0) c[k] = gemm(op::n, factors[k], op::t, factors[k]);
        matrix q = warm != nullptr ? *warm : random_orthonormal(d, r, fill);
        check_shape(q.rows == d && q.cols == r, "top_subspace", "warm start has the wrong shape");
        matrix mq = m_ops->apply_blocks(s, c, q);
        for (int it = 0; it < std::max(1, iterations); ++it) {
            matrix z(d, 2 * r);
            std::copy(q.data.begin(), q.data.end(), z.data.begin());
            std::copy(mq.data.begin(), mq.data.end(),
                      z.data.begin() + static_cast<std::ptrdiff_t>(q.data.size()));
            auto [sq, rr] = m_ops->qr(std::move(z));
            const matrix r11inv = to_float(upper_inverse(rr, r));
            matrix ms(d, 2 * r);
            gemm(op::n, mq, op::n, r11inv, ms.mut().block_cols(0, r));
            matrix s2(d, r);
            std::copy(sq.col(r), sq.col(r) + d * r, s2.data.begin());
            const matrix ms2 = m_ops->apply_blocks(s, c, s2);
            std::copy(ms2.data.begin(), ms2.data.end(), ms.col(r));
            dmatrix h = to_double(gemm(op::t, sq, op::n, ms));
            for (std::int64_t j = 0; j < 2 * r; ++j)
                for (std::int64_t i = j + 1; i < 2 * r; ++i)
                    h(i, j) = h(j, i) = 0.5 * (h(i, j) + h(j, i));
            const matrix e = to_float(top_eigenvectors(std::move(h), r).vectors);
            q = gemm(op::n, sq, op::n, e);
            mq = gemm(op::n, ms, op::n, e);
        }
        return q;
    }
    case eigen_strategy::automatic:
        break;
    }
    throw usage_error("top_subspace", "strategy must be resolved before solving");
}

jd_fit OpsBackend::fit_jd_full(const module_batch& batch, std::span<const std::size_t> members,
                               const jd_options& options, const jd_basis* warm) {
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    detail::check_members(batch, members, "fit_jd_full");
    detail::check_rank(batch, options.rank);
    const auto r = options.rank;
    const auto n = members.size();
    m_ops->select(batch, members);
    const auto& lay = m_ops->layout();

    const auto norms = working_norms2(batch, members);
    const auto w = detail::fit_weights(options.norm, norms);
    jd_fit fit;
    fit.basis.method = jd_method::full;
    fit.members.assign(members.begin(), members.end());
    for (std::size_t k = 0; k < n; ++k)
        fit.weighted_energy += w[k] * norms[k];

    std::int64_t sum_rank = 0, sum_width = 0;
    for (const auto p : members) {
        const auto ri = batch.adapters[p].rank;
        sum_rank += ri;
        sum_width += std::min(r, ri);
    }
    const int iters = std::max(1, options.subspace_iterations);
    const auto strat_u = detail::choose_strategy(options.eigen, batch.d_out, r, sum_rank, sum_width, iters);
    const auto strat_v = detail::choose_strategy(options.eigen, batch.d_in, r, sum_rank, sum_width, iters);
    fit.eigen_used = strat_u;
    auto fill = random_stream::derive(options.seed, {0xf111});

    matrix u, v;
    std::vector<matrix> lu(n), lv(n);
    if (warm != nullptr && !warm->empty()) {
        check_warm(batch, *warm, r);
        u = m_ops->qr(warm->u).first; // a JD-Diag basis is not orthonormal; a JD-Full one barely changes
        v = m_ops->qr(warm->v).first;
    } else if (options.init == jd_init::hosvd) {
        // U from sum_k w_k B_k (A_k A_k^T) B_k^T, V from sum_k w_k A_k^T (B_k^T B_k) A_k.
        const auto gb = m_ops->block_grams(U), ga = m_ops->block_grams(V);
        for (std::size_t k = 0; k < n; ++k) {
            lu[k] = factor_from_gram(ga[k], w[k]);
            lv[k] = factor_from_gram(gb[k], w[k]);
        }
        const auto hu = detail::choose_strategy(options.eigen, batch.d_out, r, sum_rank, sum_rank, 3 * iters);
        const auto hv = detail::choose_strategy(options.eigen, batch.d_in, r, sum_rank, sum_rank, 3 * iters);
        u = top_subspace(U, lu, r, hu, nullptr, 3 * iters, fill);
        v = top_subspace(V, lv, r, hv, nullptr, 3 * iters, fill);
    } else {
        auto g = random_stream::derive(options.seed, {1});
        u = random_orthonormal(batch.d_out, r, g);
        v = random_orthonormal(batch.d_in, r, g);
    }
    auto qb = split_rows(lay, m_ops->project(U, u));
    auto pa = split_rows(lay, m_ops->project(V, v));
    double f = full_objective(qb, pa, w);
    fit.objective.push_back(f);

    for (int sweep = 0; sweep < options.max_sweeps; ++sweep) {
        for (std::size_t k = 0; k < n; ++k)
            lu[k] = detail::make_factor(pa[k], w[k]);
        matrix u_new = top_subspace(U, lu, r, strat_u, &u, iters, fill);
        qb = split_rows(lay, m_ops->project(U, u_new));
        for (std::size_t k = 0; k < n; ++k)
            lv[k] = detail::make_factor(qb[k], w[k]);
        matrix v_new = top_subspace(V, lv, r, strat_v, &v, iters, fill);
        pa = split_rows(lay, m_ops->project(V, v_new));

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
        fit.cores[k] = detail::full_core(qb[k], pa[k]);
    fit.basis.u = std::move(u);
    fit.basis.v = std::move(v);
    return fit;
}

jd_fit OpsBackend::fit_jd_diag(const module_batch& batch, std::span<const std::size_t> members,
                               const jd_options& options, const jd_basis* warm) {
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    detail::check_members(batch, members, "fit_jd_diag");
    detail::check_rank(batch, options.rank);
    const auto r = options.rank;
    const auto n = members.size();

    jd_fit fit;
    fit.basis.method = jd_method::diag;
    fit.members.assign(members.begin(), members.end());
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
    m_ops->select(batch, members);
    const auto& lay = m_ops->layout();
    const auto norms = working_norms2(batch, members);
    const auto w = detail::fit_weights(options.norm, norms);
    for (std::size_t k = 0; k < n; ++k)
        fit.weighted_energy += w[k] * norms[k];
    auto qb = split_rows(lay, m_ops->project(U, u));
    auto pa = split_rows(lay, m_ops->project(V, v));
    std::vector<std::vector<double>> sigma(n);

    auto sigma_step = [&]() {
        const dmatrix g = hadamard(gram_d(u), gram_d(v));
        const auto gf = detail::factor_spd(g);
        double obj = 0.0;
        for (std::size_t k = 0; k < n; ++k) {
            const auto b = detail::diag_rhs(qb[k], pa[k]);
            sigma[k] = solve_vec(gf, b);
            double sb = 0.0;
            for (std::int64_t j = 0; j < r; ++j)
                sb += sigma[k][static_cast<std::size_t>(j)] * b[static_cast<std::size_t>(j)];
            obj += w[k] * (norms[k] - 2.0 * sb + quad(g, sigma[k]));
        }
        return obj;
    };
    auto factor_step = [&](ops_side side, const std::vector<matrix>& p, const matrix& other, matrix& x_out) {
        const dmatrix yy = gram_d(other);
        dmatrix h(r, r);
        std::vector<matrix> z(n);
        for (std::size_t k = 0; k < n; ++k) {
            z[k] = p[k];
            for (std::int64_t j = 0; j < r; ++j) {
                const double sj = sigma[k][static_cast<std::size_t>(j)];
                const auto sc = static_cast<float>(w[k] * sj);
                for (std::int64_t i = 0; i < z[k].rows; ++i)
                    z[k](i, j) *= sc;
                if (w[k] != 0.0)
                    for (std::int64_t i = 0; i < r; ++i)
                        h(i, j) += w[k] * yy(i, j) * sigma[k][static_cast<std::size_t>(i)] * sj;
            }
        }
        const matrix rhs = m_ops->accumulate(side, stack_rows(lay, z));
        const auto hf = detail::factor_spd(h);
        x_out = solve_right(hf, rhs);
        return fit.weighted_energy - 2.0 * dot(x_out.view(), rhs.view()) +
               dot(gram_d(x_out).view(), h.view());
    };

    double obj = sigma_step();
    fit.objective.push_back(obj);
    fit.step_objective.push_back(obj);
    for (int sweep = 0; sweep < options.diag_max_sweeps; ++sweep) {
        if (sweep > 0) fit.step_objective.push_back(sigma_step());
        matrix u_new;
        fit.step_objective.push_back(factor_step(U, pa, v, u_new));
        u = std::move(u_new);
        qb = split_rows(lay, m_ops->project(U, u));
        matrix v_new;
        const double o = factor_step(V, qb, u, v_new);
        fit.step_objective.push_back(o);
        v = std::move(v_new);
        pa = split_rows(lay, m_ops->project(V, v));

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
                sigma[k][static_cast<std::size_t>(j)] *= a * b;
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
            fit.cores[k](j, 0) = static_cast<float>(sigma[k][static_cast<std::size_t>(j)]);
    }
    fit.basis.u = std::move(u);
    fit.basis.v = std::move(v);
    return fit;
}

std::vector<matrix> OpsBackend::project(const module_batch& batch, const jd_basis& basis,
                                        std::span<const std::size_t> members) {
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    check_basis(batch, basis, "project");
    detail::check_positions(batch, members, "project");
    m_ops->select(batch, members);
    const auto& lay = m_ops->layout();
    const auto qb = split_rows(lay, m_ops->project(U, basis.u));
    const auto pa = split_rows(lay, m_ops->project(V, basis.v));
    std::vector<matrix> cores(members.size());
    if (basis.method == jd_method::full) {
        for (std::size_t k = 0; k < members.size(); ++k)
            cores[k] = detail::full_core(qb[k], pa[k]);
        return cores;
    }
    const auto gf = detail::factor_spd(hadamard(gram_d(basis.u), gram_d(basis.v)));
    for (std::size_t k = 0; k < members.size(); ++k) {
        const auto s = solve_vec(gf, detail::diag_rhs(qb[k], pa[k]));
        cores[k] = matrix(basis.rank(), 1);
        for (std::size_t j = 0; j < s.size(); ++j)
            cores[k].data[j] = static_cast<float>(s[j]);
    }
    return cores;
}

dmatrix OpsBackend::residuals(const module_batch& batch, std::span<const jd_basis* const> bases,
                              std::span<const std::size_t> adapters) {
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    detail::check_positions(batch, adapters, "residuals");
    const auto n = adapters.size();
    const auto nb = static_cast<std::int64_t>(bases.size());
    m_ops->select(batch, adapters);
    const auto& lay = m_ops->layout();
    const auto norms = working_norms2(batch, adapters);
    dmatrix out(static_cast<std::int64_t>(n), nb);
    for (std::int64_t c = 0; c < nb; ++c)
        for (std::size_t k = 0; k < n; ++k)
            out(static_cast<std::int64_t>(k), c) = norms[k];

    std::vector<std::int64_t> offset(static_cast<std::size_t>(nb), -1);
    std::int64_t total = 0;
    for (std::int64_t c = 0; c < nb; ++c) {
        const jd_basis* b = bases[static_cast<std::size_t>(c)];
        if (b == nullptr || b->empty()) continue;
        check_basis(batch, *b, "residuals");
        offset[static_cast<std::size_t>(c)] = total;
        total += b->rank();
    }
    if (total == 0 || n == 0) return out;
    matrix u_all(batch.d_out, total), v_all(batch.d_in, total);
    std::vector<detail::spd_factor> g(static_cast<std::size_t>(nb));
    std::vector<dmatrix> graw(static_cast<std::size_t>(nb));
    for (std::int64_t c = 0; c < nb; ++c) {
        const auto off = offset[static_cast<std::size_t>(c)];
        if (off < 0) continue;
        const jd_basis& b = *bases[static_cast<std::size_t>(c)];
        std::copy(b.u.data.begin(), b.u.data.end(), u_all.col(off));
        std::copy(b.v.data.begin(), b.v.data.end(), v_all.col(off));
        if (b.method == jd_method::diag) {
            graw[static_cast<std::size_t>(c)] = hadamard(gram_d(b.u), gram_d(b.v));
            g[static_cast<std::size_t>(c)] = detail::factor_spd(graw[static_cast<std::size_t>(c)]);
        }
    }
    // JD-Full bases: captured energy ||U^T dW V||^2 per (adapter, basis) in one device-side op.
    std::vector<std::int64_t> full_off, full_width, full_col;
    bool any_diag = false;
    for (std::int64_t c = 0; c < nb; ++c) {
        const auto off = offset[static_cast<std::size_t>(c)];
        if (off < 0) continue;
        if (bases[static_cast<std::size_t>(c)]->method == jd_method::full) {
            full_off.push_back(off);
            full_width.push_back(bases[static_cast<std::size_t>(c)]->rank());
            full_col.push_back(c);
        } else {
            any_diag = true;
        }
    }
    if (!full_off.empty()) {
        const dmatrix cap = m_ops->block_core_norms(u_all, v_all, full_off, full_width);
        for (std::size_t j = 0; j < full_col.size(); ++j)
            for (std::size_t k = 0; k < n; ++k)
                out(static_cast<std::int64_t>(k), full_col[j]) =
                    std::max(0.0, norms[k] - cap(static_cast<std::int64_t>(k), static_cast<std::int64_t>(j)));
    }
    if (!any_diag) return out;
    // JD-Diag bases: captured 2 sigma^T b - sigma^T G sigma with b = diag(U^T dW V), on the host.
    const matrix qb_all = m_ops->project(U, u_all); // [R, total]
    const matrix pa_all = m_ops->project(V, v_all);
    const auto ld = std::max<std::int64_t>(1, lay.total);
    for (std::size_t k = 0; k < n; ++k) {
        const auto rk = lay.ranks[k], row = lay.offsets[k];
        for (std::int64_t c = 0; c < nb; ++c) {
            const auto off = offset[static_cast<std::size_t>(c)];
            if (off < 0 || bases[static_cast<std::size_t>(c)]->method != jd_method::diag) continue;
            const auto rc = bases[static_cast<std::size_t>(c)]->rank();
            const view qb{qb_all.data.data() + row + off * ld, rk, rc, ld};
            const view pa{pa_all.data.data() + row + off * ld, rk, rc, ld};
            std::vector<double> rhs(static_cast<std::size_t>(rc), 0.0);
            for (std::int64_t j = 0; j < rc; ++j)
                for (std::int64_t i = 0; i < rk; ++i)
                    rhs[static_cast<std::size_t>(j)] += static_cast<double>(qb(i, j)) * pa(i, j);
            const auto sv = solve_vec(g[static_cast<std::size_t>(c)], rhs);
            double sb = 0.0;
            for (std::size_t j = 0; j < sv.size(); ++j)
                sb += sv[j] * rhs[j];
            const double captured = 2.0 * sb - quad(graw[static_cast<std::size_t>(c)], sv);
            out(static_cast<std::int64_t>(k), c) = std::max(0.0, norms[k] - captured);
        }
    }
    return out;
}

std::vector<double> OpsBackend::errors(const module_batch& batch, const jd_basis& basis,
                                       std::span<const std::size_t> members, std::span<const matrix> cores) {
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    check_basis(batch, basis, "errors");
    detail::check_positions(batch, members, "errors");
    const auto r = basis.rank();
    if (cores.size() != members.size())
        throw shape_mismatch(batch.name, "errors: " + std::to_string(cores.size()) + " cores for " +
                                             std::to_string(members.size()) + " members");
    for (const auto& c : cores)
        if (!((c.rows == r && c.cols == r) || (c.rows == r && c.cols == 1)))
            throw shape_mismatch(batch.name, "errors: core " + std::to_string(c.rows) + "x" +
                                                 std::to_string(c.cols) + " for rank " + std::to_string(r));
    m_ops->select(batch, members);
    const auto norms = working_norms2(batch, members);
    // ||B A - U S V^T||^2 = tr((B^T B)(A A^T)) - 2 <S, (U^T B)(A V)> + tr(U^T U S V^T V S^T): the terms
    // cancel when the fit is good, so the products with the factors come from the ops' exact variants
    // (double on the host) and the r x r algebra is in double.
    const dmatrix ud = to_double(basis.u), vd = to_double(basis.v);
    const dmatrix uu = gemm(op::t, ud.view(), op::n, ud.view()),
                  vv = gemm(op::t, vd.view(), op::n, vd.view());
    const auto qb = m_ops->project_exact(U, basis.u);
    const auto pa = m_ops->project_exact(V, basis.v);
    std::vector<double> out(members.size());
    for (std::size_t k = 0; k < members.size(); ++k) {
        const dmatrix m = gemm(op::t, qb[k].view(), op::n, pa[k].view());
        dmatrix s(r, r);
        if (cores[k].cols == r) {
            s = to_double(cores[k]);
        } else {
            for (std::int64_t j = 0; j < r; ++j)
                s(j, j) = cores[k](j, 0);
        }
        const double cross = dot(s.view(), m.view());
        const dmatrix us_ = gemm(op::n, uu.view(), op::n, s.view());
        const dmatrix usv = gemm(op::n, us_.view(), op::n, vv.view());
        out[k] = std::max(0.0, norms[k] - 2.0 * cross + dot(usv.view(), s.view()));
    }
    return out;
}

} // namespace lorafleet::compress
