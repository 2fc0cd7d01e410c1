// CpuBackend: JD-Full (HOOI), JD-Diag (ALS), projection, residuals and exact errors on one module,
// all factored (method.md §2-§4, §6). Per-adapter work goes through the worker pool; see cpu_detail.hpp
// for the subspace solvers. Notation in comments: qb_i = B_i^T U [r_i, r], pa_i = A_i V [r_i, r], so
// U^T dW_i V = qb_i^T pa_i.
#include "engine/compress/cpu_backend.hpp"

#include "engine/compress/cpu_detail.hpp"
#include "engine/compress/random.hpp"
#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lorafleet::compress {

using detail::side_access;

const char* to_string(jd_method m) {
    return m == jd_method::full ? "jd-full" : "jd-diag";
}

const char* to_string(eigen_strategy s) {
    switch (s) {
    case eigen_strategy::automatic:
        return "automatic";
    case eigen_strategy::exact_small_gram:
        return "exact-small-gram";
    case eigen_strategy::exact_large_gram:
        return "exact-large-gram";
    case eigen_strategy::subspace:
        return "subspace";
    }
    return "?";
}

std::vector<std::size_t> all_positions(const module_batch& batch) {
    std::vector<std::size_t> p(batch.size());
    std::iota(p.begin(), p.end(), std::size_t{0});
    return p;
}

CpuBackend::CpuBackend(cpu_backend_options options)
    : m_pool(options.threads > 0 ? options.threads : hardware_threads()) {}

std::vector<double> CpuBackend::norms2(const module_batch& batch) {
    blas_threads_guard blas(1);
    batch.validate();
    const auto all = all_positions(batch);
    module_batch uncached = batch; // shares storage; forces a fresh computation
    uncached.norms2.clear();
    return detail::member_norms2(m_pool, uncached, all);
}

namespace {

// F = sum_i w_i ||qb_i^T pa_i||^2 (double accumulation of fp32 r x r products).
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

// Solves X H = rhs for X [d, r] (H symmetric, factored): X^T = H^-1 rhs^T.
matrix solve_right(const detail::spd_factor& h, const matrix& rhs) {
    dmatrix x = to_double(rhs); // [d, r]
    cholesky_solve_right(h.l, x);
    return to_float(x);
}

// sigma^T G sigma for symmetric G.
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

// Throws shape_mismatch unless `warm` is a [d_out, r] / [d_in, r] basis for this module and rank.
void check_warm(const module_batch& batch, const jd_basis& warm, std::int64_t r) {
    if (warm.u.rows != batch.d_out || warm.v.rows != batch.d_in || warm.u.cols != r || warm.v.cols != r)
        throw shape_mismatch(batch.name, "warm-start basis U " + std::to_string(warm.u.rows) + "x" +
                                             std::to_string(warm.u.cols) + ", V " +
                                             std::to_string(warm.v.rows) + "x" + std::to_string(warm.v.cols) +
                                             " does not fit rank " + std::to_string(r));
}

} // namespace

jd_fit CpuBackend::fit_jd_full(const module_batch& batch, std::span<const std::size_t> members,
                               const jd_options& options, const jd_basis* warm) {
    blas_threads_guard blas(1);
    batch.validate();
    detail::check_members(batch, members, "fit_jd_full");
    detail::check_rank(batch, options.rank);
    const auto r = options.rank;
    const auto n = members.size();
    const side_access us{&batch, true}, vs{&batch, false};

    const auto norms = detail::member_norms2(m_pool, batch, members);
    const auto w = detail::fit_weights(options.norm, norms);
    jd_fit fit;
    fit.basis.method = jd_method::full;
    fit.members.assign(members.begin(), members.end());
    for (std::size_t k = 0; k < n; ++k)
        fit.weighted_energy += w[k] * norms[k];

    std::int64_t sum_rank = 0, sum_width = 0;
    double sum_rank2 = 0.0;
    for (const auto p : members) {
        const auto ri = batch.adapters[p].rank;
        sum_rank += ri;
        sum_width += std::min(r, ri);
        sum_rank2 += static_cast<double>(ri * ri);
    }
    const double factor_flops = 4.0 * static_cast<double>(r) * sum_rank2; // QR of [r, r_i] when r > r_i
    const int iters = std::max(1, options.subspace_iterations);
    const auto strat_u = detail::choose_strategy(options.eigen, batch.d_out, r, sum_rank, sum_width, iters);
    const auto strat_v = detail::choose_strategy(options.eigen, batch.d_in, r, sum_rank, sum_width, iters);
    fit.eigen_used = strat_u;
    rng fill(options.seed, 0xf111);

    matrix u, v; // [d_out, r], [d_in, r]
    std::vector<matrix> lu(n), lv(n);
    if (warm != nullptr && !warm->empty()) {
        check_warm(batch, *warm, r);
        u = orthonormalize(warm->u); // a JD-Diag basis is not orthonormal; a JD-Full one barely changes
        v = orthonormalize(warm->v);
    } else if (options.init == jd_init::hosvd) {
        // Independent one-sided problems: U from sum_i w_i B_i (A_i A_i^T) B_i^T, V from
        // sum_i w_i A_i^T (B_i^T B_i) A_i (this is what gives the §3 HOSVD error bound).
        m_pool.parallel_for(
            n,
            [&](std::size_t b, std::size_t e, int) {
                for (std::size_t k = b; k < e; ++k) {
                    lu[k] = detail::make_factor_t(batch.a_t(members[k]), w[k]);
                    lv[k] = detail::make_factor_t(transpose(batch.b_t(members[k])), w[k]);
                }
            },
            4.0 * static_cast<double>(batch.d_out + batch.d_in) * sum_rank2);
        const auto hu = detail::choose_strategy(options.eigen, batch.d_out, r, sum_rank, sum_rank, 3 * iters);
        const auto hv = detail::choose_strategy(options.eigen, batch.d_in, r, sum_rank, sum_rank, 3 * iters);
        u = detail::top_subspace(m_pool, us, members, lu, r, hu, nullptr, 3 * iters, fill);
        v = detail::top_subspace(m_pool, vs, members, lv, r, hv, nullptr, 3 * iters, fill);
    } else {
        rng g(options.seed, 1);
        u = random_orthonormal(batch.d_out, r, g);
        v = random_orthonormal(batch.d_in, r, g);
    }
    auto qb = detail::project_side(m_pool, us, members, u);
    auto pa = detail::project_side(m_pool, vs, members, v);
    double f = full_objective(qb, pa, w);
    fit.objective.push_back(f);

    for (int sweep = 0; sweep < options.max_sweeps; ++sweep) {
        // U-step: top-r eigenvectors of M_U = sum_i w_i B_i pa_i pa_i^T B_i^T.
        m_pool.parallel_for(
            n,
            [&](std::size_t b, std::size_t e, int) {
                for (std::size_t k = b; k < e; ++k)
                    lu[k] = detail::make_factor(pa[k], w[k]);
            },
            factor_flops);
        matrix u_new = detail::top_subspace(m_pool, us, members, lu, r, strat_u, &u, iters, fill);
        qb = detail::project_side(m_pool, us, members, u_new);
        // V-step with the new U: M_V = sum_i w_i A_i^T qb_i qb_i^T A_i.
        m_pool.parallel_for(
            n,
            [&](std::size_t b, std::size_t e, int) {
                for (std::size_t k = b; k < e; ++k)
                    lv[k] = detail::make_factor(qb[k], w[k]);
            },
            factor_flops);
        matrix v_new = detail::top_subspace(m_pool, vs, members, lv, r, strat_v, &v, iters, fill);
        pa = detail::project_side(m_pool, vs, members, v_new);

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
    m_pool.parallel_for(
        n,
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k)
                fit.cores[k] = detail::full_core(qb[k], pa[k]);
        },
        2.0 * static_cast<double>(r * r) * sum_rank);
    fit.basis.u = std::move(u);
    fit.basis.v = std::move(v);
    return fit;
}

jd_fit CpuBackend::fit_jd_diag(const module_batch& batch, std::span<const std::size_t> members,
                               const jd_options& options, const jd_basis* warm) {
    blas_threads_guard blas(1);
    batch.validate();
    detail::check_members(batch, members, "fit_jd_diag");
    detail::check_rank(batch, options.rank);
    const auto r = options.rank;
    const auto n = members.size();
    const side_access us{&batch, true}, vs{&batch, false};
    const auto norms = detail::member_norms2(m_pool, batch, members);
    const auto w = detail::fit_weights(options.norm, norms);

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
    auto qb = detail::project_side(m_pool, us, members, u);
    auto pa = detail::project_side(m_pool, vs, members, v);
    std::vector<std::vector<double>> sigma(n);

    // sigma-step (§4.1): G = (U^T U) o (V^T V), sigma_i = G^-1 diag(U^T dW_i V). Returns the objective.
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
    // U- or V-step (§4.2-3): X = (sum_i w_i T_i P_i diag(sigma_i)) H^-1 with H = sum_i w_i (Y^T Y) o
    // (sigma_i sigma_i^T), where (T, P, Y) = (B, pa, V) for U and (A^T, qb, U) for V. Returns the new
    // factor and the objective sum w n - 2 tr(X^T rhs) + tr((X^T X) H).
    auto factor_step = [&](const side_access& side, const std::vector<matrix>& p, const matrix& other,
                           matrix& x_out) {
        const dmatrix yy = gram_d(other);
        dmatrix h(r, r);
        std::vector<matrix> z(n);
        for (std::size_t k = 0; k < n; ++k) {
            z[k] = p[k];
            for (std::int64_t j = 0; j < r; ++j) {
                const double sj = sigma[k][static_cast<std::size_t>(j)];
                const auto s = static_cast<float>(w[k] * sj);
                for (std::int64_t i = 0; i < z[k].rows; ++i)
                    z[k](i, j) *= s;
                if (w[k] != 0.0)
                    for (std::int64_t i = 0; i < r; ++i)
                        h(i, j) += w[k] * yy(i, j) * sigma[k][static_cast<std::size_t>(i)] * sj;
            }
        }
        const matrix rhs = detail::accumulate_side(m_pool, side, members, z, r);
        const auto hf = detail::factor_spd(h);
        x_out = solve_right(hf, rhs);
        return fit.weighted_energy - 2.0 * dot(x_out.view(), rhs.view()) +
               dot(gram_d(x_out).view(), h.view());
    };

    double obj = sigma_step();
    fit.objective.push_back(obj);
    fit.step_objective.push_back(obj);
    for (int sweep = 0; sweep < options.diag_max_sweeps; ++sweep) {
        if (sweep > 0) {
            const double o = sigma_step();
            fit.step_objective.push_back(o);
        }
        matrix u_new;
        fit.step_objective.push_back(factor_step(us, pa, v, u_new));
        u = std::move(u_new);
        qb = detail::project_side(m_pool, us, members, u);
        matrix v_new;
        const double o = factor_step(vs, qb, u, v_new);
        fit.step_objective.push_back(o);
        v = std::move(v_new);
        pa = detail::project_side(m_pool, vs, members, v);

        // Gauge (§4.4, per column): unit-norm columns of U and V, magnitudes into sigma. Products are
        // unchanged; G keeps a unit diagonal, which keeps the Cholesky solves well conditioned.
        for (std::int64_t j = 0; j < r; ++j) {
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
    // Final sigma-step so the cores are optimal for the final U, V (§6's projection).
    const double final_obj = sigma_step();
    fit.step_objective.push_back(final_obj);
    fit.objective.back() = final_obj; // the objective of exactly what is returned (<= the V-step's)
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

namespace {

void check_basis(const module_batch& batch, const jd_basis& basis, const char* what) {
    if (basis.empty() || basis.u.rows != batch.d_out || basis.v.rows != batch.d_in ||
        basis.v.cols != basis.u.cols)
        throw shape_mismatch(batch.name, std::string(what) + ": basis U " + std::to_string(basis.u.rows) +
                                             "x" + std::to_string(basis.u.cols) + ", V " +
                                             std::to_string(basis.v.rows) + "x" +
                                             std::to_string(basis.v.cols) + " does not fit the module " +
                                             std::to_string(batch.d_out) + "x" + std::to_string(batch.d_in));
}

} // namespace

std::vector<matrix> CpuBackend::project(const module_batch& batch, const jd_basis& basis,
                                        std::span<const std::size_t> members) {
    blas_threads_guard blas(1);
    batch.validate();
    check_basis(batch, basis, "project");
    detail::check_positions(batch, members, "project");
    const side_access us{&batch, true}, vs{&batch, false};
    const auto qb = detail::project_side(m_pool, us, members, basis.u);
    const auto pa = detail::project_side(m_pool, vs, members, basis.v);
    std::vector<matrix> cores(members.size());
    if (basis.method == jd_method::full) {
        m_pool.parallel_for(
            members.size(),
            [&](std::size_t b, std::size_t e, int) {
                for (std::size_t k = b; k < e; ++k)
                    cores[k] = detail::full_core(qb[k], pa[k]);
            },
            2.0 * static_cast<double>(basis.rank() * basis.rank()) * detail::sum_rank(batch, members));
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

dmatrix CpuBackend::residuals(const module_batch& batch, std::span<const jd_basis* const> bases,
                              std::span<const std::size_t> adapters) {
    blas_threads_guard blas(1);
    batch.validate();
    detail::check_positions(batch, adapters, "residuals");
    const auto n = adapters.size();
    const auto nb = static_cast<std::int64_t>(bases.size());
    const auto norms = detail::member_norms2(m_pool, batch, adapters);
    dmatrix out(static_cast<std::int64_t>(n), nb);
    for (std::int64_t c = 0; c < nb; ++c)
        for (std::size_t k = 0; k < n; ++k)
            out(static_cast<std::int64_t>(k), c) = norms[k];

    // Stack every non-empty basis side by side so each adapter needs two GEMMs in all.
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
    const side_access us{&batch, true}, vs{&batch, false};
    const double flops =
        2.0 * static_cast<double>((batch.d_out + batch.d_in) * total) * detail::sum_rank(batch, adapters);
    m_pool.parallel_for(
        n,
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k) {
                const matrix qb_all = gemm(us.how_t(), us.stored(adapters[k]), op::n, u_all); // [r_i, total]
                const matrix pa_all = gemm(vs.how_t(), vs.stored(adapters[k]), op::n, v_all);
                for (std::int64_t c = 0; c < nb; ++c) {
                    const auto off = offset[static_cast<std::size_t>(c)];
                    if (off < 0) continue;
                    const jd_basis& basis = *bases[static_cast<std::size_t>(c)];
                    const auto rc = basis.rank();
                    const view qb = qb_all.view().block_cols(off, rc), pa = pa_all.view().block_cols(off, rc);
                    double captured = 0.0;
                    if (basis.method == jd_method::full) {
                        captured = frobenius2(gemm(op::t, qb, op::n, pa));
                    } else {
                        std::vector<double> rhs(static_cast<std::size_t>(rc), 0.0);
                        for (std::int64_t j = 0; j < rc; ++j)
                            for (std::int64_t i = 0; i < qb.rows; ++i)
                                rhs[static_cast<std::size_t>(j)] += static_cast<double>(qb(i, j)) * pa(i, j);
                        const auto s = solve_vec(g[static_cast<std::size_t>(c)], rhs);
                        double sb = 0.0;
                        for (std::size_t j = 0; j < s.size(); ++j)
                            sb += s[j] * rhs[j];
                        captured = 2.0 * sb - quad(graw[static_cast<std::size_t>(c)], s);
                    }
                    out(static_cast<std::int64_t>(k), c) = std::max(0.0, norms[k] - captured);
                }
            }
        },
        flops);
    return out;
}

std::vector<double> CpuBackend::errors(const module_batch& batch, const jd_basis& basis,
                                       std::span<const std::size_t> members, std::span<const matrix> cores) {
    blas_threads_guard blas(1);
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
    // ||B A - U S V^T||^2 = tr((B^T B)(A A^T)) - 2 <S, (U^T B)(A V)> + tr(U^T U S V^T V S^T), every
    // product in double from the exact fp32 inputs (the terms cancel when the fit is good).
    const dmatrix ud = to_double(basis.u), vd = to_double(basis.v);
    const dmatrix uu = gemm(op::t, ud.view(), op::n, ud.view()),
                  vv = gemm(op::t, vd.view(), op::n, vd.view());
    std::vector<double> out(members.size());
    const double flops =
        4.0 * static_cast<double>((batch.d_out + batch.d_in) * 2 * r) * detail::sum_rank(batch, members);
    m_pool.parallel_for(
        members.size(),
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k) {
                const auto pos = members[k];
                const dmatrix bt = to_double(batch.b_t(pos)); // [r_i, d_out]
                const dmatrix at = to_double(batch.a_t(pos)); // [d_in, r_i]
                const dmatrix bb = gemm(op::n, bt.view(), op::t, bt.view());
                const dmatrix aa = gemm(op::t, at.view(), op::n, at.view());
                const double norm2 = dot(bb.view(), aa.view());
                const dmatrix ub = gemm(op::t, ud.view(), op::t, bt.view()); // [r, r_i]
                const dmatrix av = gemm(op::t, at.view(), op::n, vd.view()); // [r_i, r]
                const dmatrix m = gemm(op::n, ub.view(), op::n, av.view());  // U^T dW V [r, r]
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
                const double q = dot(usv.view(), s.view());
                out[k] = std::max(0.0, norm2 - 2.0 * cross + q);
            }
        },
        flops);
    return out;
}

} // namespace lorafleet::compress
