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

namespace {

// The products of one lock-step step for the clusters in `active` (indices into the working sets): in
// `single` mode the one cluster is the plain selected working set (fit(): the ops may parallelize inside
// it), otherwise the grouped working set of select_groups() (fit_clusters(): one grouped call for all).
class step_ops {
public:
    step_ops(LinalgOps& ops, bool single) : m_ops(ops), m_single(single) {}

    const ops_layout& layout(std::size_t g) const {
        return m_single ? m_ops.layout() : m_ops.group_layout(g);
    }

    std::vector<matrix> project(ops_side s, std::span<const std::size_t> active,
                                const std::vector<matrix>& x) {
        if (active.empty()) return {};
        if (m_single) return one<matrix>(active, [&] { return m_ops.project(s, x[0]); });
        return m_ops.project_groups(s, active, x);
    }
    std::vector<matrix> accumulate(ops_side s, std::span<const std::size_t> active,
                                   const std::vector<matrix>& z) {
        if (active.empty()) return {};
        if (m_single) return one<matrix>(active, [&] { return m_ops.accumulate(s, z[0]); });
        return m_ops.accumulate_groups(s, active, z);
    }
    std::vector<matrix> apply_blocks(ops_side s, std::span<const std::size_t> active,
                                     const std::vector<std::vector<matrix>>& c,
                                     const std::vector<matrix>& q) {
        if (active.empty()) return {};
        if (m_single) return one<matrix>(active, [&] { return m_ops.apply_blocks(s, c[0], q[0]); });
        return m_ops.apply_blocks_groups(s, active, c, q);
    }
    std::vector<std::vector<matrix>> block_grams(ops_side s, std::span<const std::size_t> active) {
        if (active.empty()) return {};
        if (m_single) return one<std::vector<matrix>>(active, [&] { return m_ops.block_grams(s); });
        return m_ops.block_grams_groups(s, active);
    }
    std::vector<std::vector<dmatrix>> block_grams_exact(ops_side s, std::span<const std::size_t> active) {
        if (active.empty()) return {};
        if (m_single) return one<std::vector<dmatrix>>(active, [&] { return m_ops.block_grams_exact(s); });
        return m_ops.block_grams_exact_groups(s, active);
    }
    std::vector<matrix> top_small_gram(ops_side s, std::span<const std::size_t> active,
                                       const std::vector<std::vector<matrix>>& factors,
                                       const std::vector<std::int64_t>& k) {
        if (active.empty()) return {};
        if (m_single) return one<matrix>(active, [&] { return m_ops.top_small_gram(s, factors[0], k[0]); });
        return m_ops.top_small_gram_groups(s, active, factors, k);
    }
    std::vector<matrix> top_large_gram(ops_side s, std::span<const std::size_t> active,
                                       const std::vector<std::vector<matrix>>& factors, std::int64_t r) {
        if (active.empty()) return {};
        if (m_single) return one<matrix>(active, [&] { return m_ops.top_large_gram(s, factors[0], r); });
        return m_ops.top_large_gram_groups(s, active, factors, r);
    }
    std::vector<std::pair<matrix, matrix>> qr(std::vector<matrix> a) {
        if (a.empty()) return {};
        if (m_single && a.size() == 1) {
            std::vector<std::pair<matrix, matrix>> out;
            out.push_back(m_ops.qr(std::move(a[0])));
            return out;
        }
        return m_ops.qr_many(std::move(a));
    }

private:
    template <class Out, class Fn> std::vector<Out> one(std::span<const std::size_t> active, const Fn& fn) {
        check_shape(active.size() == 1, "step_ops", "one cluster in single mode");
        std::vector<Out> out;
        out.push_back(fn());
        return out;
    }

    LinalgOps& m_ops;
    bool m_single;
};

// One cluster's JD-Full (HOOI) state between lock-step steps.
struct full_run {
    std::size_t group = 0;
    std::span<const std::size_t> members;
    const jd_basis* warm = nullptr;
    std::vector<double> norms, w;
    jd_fit fit;
    eigen_strategy strat_u = eigen_strategy::automatic, strat_v = eigen_strategy::automatic;
    eigen_strategy init_u = eigen_strategy::automatic, init_v = eigen_strategy::automatic;
    random_stream fill{0};
    matrix u, v;
    std::vector<matrix> lu, lv, qb, pa;
    double f = 0.0;
    bool done = false;
};

// One cluster's JD-Diag (ALS) state.
struct diag_run {
    std::size_t group = 0;
    std::span<const std::size_t> members;
    const jd_basis* warm = nullptr;
    std::vector<double> norms, w;
    jd_fit fit;
    matrix u, v;
    std::vector<matrix> qb, pa;
    std::vector<std::vector<double>> sigma;
    double obj = 0.0;
    bool done = false;
};

template <class Run> std::vector<std::size_t> groups_of(const std::vector<Run*>& runs) {
    std::vector<std::size_t> g;
    g.reserve(runs.size());
    for (const Run* r : runs)
        g.push_back(r->group);
    return g;
}

// ||dW_k||^2 of every run's members: from batch.norms2 when cached, else tr((B^T B)(A A^T)) from the
// exact block Grams (double on the host; see LinalgOps::block_grams_exact).
template <class Run> void fill_norms(step_ops& so, const module_batch& batch, const std::vector<Run*>& runs) {
    if (batch.norms2.size() == batch.size()) {
        for (Run* run : runs) {
            run->norms.resize(run->members.size());
            for (std::size_t k = 0; k < run->members.size(); ++k)
                run->norms[k] = batch.norms2[run->members[k]];
        }
        return;
    }
    const auto groups = groups_of(runs);
    const auto gb = so.block_grams_exact(U, groups), ga = so.block_grams_exact(V, groups);
    for (std::size_t i = 0; i < runs.size(); ++i) {
        auto& norms = runs[i]->norms;
        norms.resize(runs[i]->members.size());
        for (std::size_t k = 0; k < norms.size(); ++k)
            norms[k] = std::max(0.0, dot(gb[i][k].view(), ga[i][k].view()));
    }
}

// The top-r subspace of M = X X^T (X = [T_k L_k]) for every run, each by its own strategy (the runs of
// one strategy share every grouped call). factors[i], strategy[i], warm[i] (may be null) per run.
std::vector<matrix> top_subspaces(step_ops& so, const module_batch& batch, ops_side s,
                                  const std::vector<full_run*>& runs,
                                  const std::vector<std::vector<matrix>>& factors, std::int64_t r,
                                  const std::vector<eigen_strategy>& strategy,
                                  const std::vector<const matrix*>& warm, int iterations) {
    const auto d = s == U ? batch.d_out : batch.d_in;
    check_shape(r >= 1 && r <= d, "top_subspace",
                "rank " + std::to_string(r) + " for dimension " + std::to_string(d));
    std::vector<matrix> out(runs.size());
    auto pick = [&](eigen_strategy st) {
        std::vector<std::size_t> idx;
        for (std::size_t i = 0; i < runs.size(); ++i) {
            if (strategy[i] == eigen_strategy::automatic)
                throw usage_error("top_subspace", "strategy must be resolved before solving");
            if (strategy[i] == st) idx.push_back(i);
        }
        return idx;
    };

    // exact_small_gram: top-k of X^T X, then random fill to r columns and a QR.
    if (const auto idx = pick(eigen_strategy::exact_small_gram); !idx.empty()) {
        std::vector<std::size_t> g;
        std::vector<std::vector<matrix>> f;
        std::vector<std::int64_t> k;
        std::vector<std::size_t> solved; // positions in idx with k > 0
        for (std::size_t j = 0; j < idx.size(); ++j) {
            std::int64_t m = 0;
            for (const auto& x : factors[idx[j]])
                m += x.cols;
            if (std::min(r, m) == 0) continue;
            g.push_back(runs[idx[j]]->group);
            f.push_back(factors[idx[j]]);
            k.push_back(std::min(r, m));
            solved.push_back(j);
        }
        auto y = so.top_small_gram(s, g, f, k);
        std::vector<matrix> full(idx.size());
        for (std::size_t j = 0, next = 0; j < idx.size(); ++j) {
            const matrix ys = next < solved.size() && solved[next] == j ? std::move(y[next++]) : matrix(d, 0);
            // Appends random directions up to r columns (the run's own stream) before orthonormalizing.
            full[j] = matrix(d, r);
            std::copy(ys.data.begin(), ys.data.end(), full[j].data.begin());
            auto& fill = runs[idx[j]]->fill;
            for (std::size_t i = ys.data.size(); i < full[j].data.size(); ++i)
                full[j].data[i] = static_cast<float>(fill.normal());
        }
        auto q = so.qr(std::move(full));
        for (std::size_t j = 0; j < idx.size(); ++j)
            out[idx[j]] = std::move(q[j].first);
    }
    // exact_large_gram: the top-r eigenvectors of X X^T.
    if (const auto idx = pick(eigen_strategy::exact_large_gram); !idx.empty()) {
        std::vector<std::size_t> g;
        std::vector<std::vector<matrix>> f;
        for (const auto i : idx) {
            g.push_back(runs[i]->group);
            f.push_back(factors[i]);
        }
        auto y = so.top_large_gram(s, g, f, r);
        for (std::size_t j = 0; j < idx.size(); ++j)
            out[idx[j]] = std::move(y[j]);
    }
    // subspace: block Krylov with Rayleigh-Ritz on [Q, M Q] (warm start, or a random orthonormal one).
    if (const auto idx = pick(eigen_strategy::subspace); !idx.empty()) {
        const auto n = idx.size();
        std::vector<std::size_t> g(n);
        std::vector<std::vector<matrix>> c(n);
        std::vector<matrix> q(n);
        for (std::size_t j = 0; j < n; ++j) {
            const auto i = idx[j];
            g[j] = runs[i]->group;
            c[j].resize(factors[i].size());
            for (std::size_t k = 0; k < factors[i].size(); ++k)
                if (factors[i][k].cols > 0) c[j][k] = gemm(op::n, factors[i][k], op::t, factors[i][k]);
            q[j] = warm[i] != nullptr ? *warm[i] : random_orthonormal(d, r, runs[i]->fill);
            check_shape(q[j].rows == d && q[j].cols == r, "top_subspace", "warm start has the wrong shape");
        }
        auto mq = so.apply_blocks(s, g, c, q);
        for (int it = 0; it < std::max(1, iterations); ++it) {
            std::vector<matrix> z(n);
            for (std::size_t j = 0; j < n; ++j) {
                z[j] = matrix(d, 2 * r);
                std::copy(q[j].data.begin(), q[j].data.end(), z[j].data.begin());
                std::copy(mq[j].data.begin(), mq[j].data.end(),
                          z[j].data.begin() + static_cast<std::ptrdiff_t>(q[j].data.size()));
            }
            auto qrs = so.qr(std::move(z));
            std::vector<matrix> ms(n), s2(n);
            for (std::size_t j = 0; j < n; ++j) {
                const matrix r11inv = to_float(upper_inverse(qrs[j].second, r));
                ms[j] = matrix(d, 2 * r);
                gemm(op::n, mq[j], op::n, r11inv, ms[j].mut().block_cols(0, r));
                s2[j] = matrix(d, r);
                std::copy(qrs[j].first.col(r), qrs[j].first.col(r) + d * r, s2[j].data.begin());
            }
            const auto ms2 = so.apply_blocks(s, g, c, s2);
            for (std::size_t j = 0; j < n; ++j) {
                std::copy(ms2[j].data.begin(), ms2[j].data.end(), ms[j].col(r));
                const matrix& sq = qrs[j].first;
                dmatrix h = to_double(gemm(op::t, sq, op::n, ms[j]));
                for (std::int64_t b = 0; b < 2 * r; ++b)
                    for (std::int64_t a = b + 1; a < 2 * r; ++a)
                        h(a, b) = h(b, a) = 0.5 * (h(a, b) + h(b, a));
                const matrix e = to_float(top_eigenvectors(std::move(h), r).vectors);
                q[j] = gemm(op::n, sq, op::n, e);
                mq[j] = gemm(op::n, ms[j], op::n, e);
            }
        }
        for (std::size_t j = 0; j < n; ++j)
            out[idx[j]] = std::move(q[j]);
    }
    return out;
}

// Projections T^T X of every run's basis (side s), split into per-member blocks.
template <class Run>
std::vector<std::vector<matrix>> project_runs(step_ops& so, ops_side s, const std::vector<Run*>& runs) {
    std::vector<matrix> x;
    x.reserve(runs.size());
    for (const Run* run : runs)
        x.push_back(s == U ? run->u : run->v);
    const auto p = so.project(s, groups_of(runs), x);
    std::vector<std::vector<matrix>> out(runs.size());
    for (std::size_t i = 0; i < runs.size(); ++i)
        out[i] = split_rows(so.layout(runs[i]->group), p[i]);
    return out;
}

// What half a HOOI sweep of one side reads and writes in a full_run: the factors it builds from the
// other side's projections, its eigen strategy, its basis and the projections it produces.
struct full_side {
    ops_side side;
    std::vector<matrix> full_run::*factors;
    std::vector<matrix> full_run::*from;
    eigen_strategy full_run::*strategy;
    matrix full_run::*basis;
    std::vector<matrix> full_run::*projected;
};
constexpr full_side side_u{U, &full_run::lu, &full_run::pa, &full_run::strat_u, &full_run::u, &full_run::qb};
constexpr full_side side_v{V, &full_run::lv, &full_run::qb, &full_run::strat_v, &full_run::v, &full_run::pa};

// Half a sweep for every active run: the side's factors from the other side's projections, its new
// basis (warm-started from the current one), its projections. Returns the previous bases.
std::vector<matrix> half_sweep(step_ops& so, const module_batch& batch, const full_side& s,
                               const std::vector<full_run*>& act, std::int64_t r, int iters) {
    const auto n = act.size();
    std::vector<std::vector<matrix>> lf(n);
    std::vector<eigen_strategy> st(n);
    std::vector<const matrix*> start(n);
    for (std::size_t i = 0; i < n; ++i) {
        full_run& run = *act[i];
        auto& factors = run.*s.factors;
        for (std::size_t k = 0; k < run.members.size(); ++k)
            factors[k] = detail::make_factor((run.*s.from)[k], run.w[k]);
        lf[i] = factors;
        st[i] = run.*s.strategy;
        start[i] = &(run.*s.basis);
    }
    auto fresh = top_subspaces(so, batch, s.side, act, lf, r, st, start, iters);
    std::vector<matrix> old(n);
    for (std::size_t i = 0; i < n; ++i) {
        old[i] = std::move(act[i]->*s.basis);
        act[i]->*s.basis = std::move(fresh[i]);
    }
    auto projected = project_runs(so, s.side, act);
    for (std::size_t i = 0; i < n; ++i)
        act[i]->*s.projected = std::move(projected[i]);
    return old;
}

// JD-Full (HOOI, method.md §3) of every run in lock-step: each step's products for all runs still
// sweeping go through one grouped call; a run that met a tolerance stops exactly where fit() would.
void run_full(step_ops& so, const module_batch& batch, const std::vector<full_run*>& runs,
              const jd_options& options) {
    const auto r = options.rank;
    const int iters = std::max(1, options.subspace_iterations);
    fill_norms(so, batch, runs);
    for (full_run* run : runs) {
        const auto n = run->members.size();
        run->w = detail::fit_weights(options.norm, run->norms);
        run->fit.basis.method = jd_method::full;
        run->fit.members.assign(run->members.begin(), run->members.end());
        for (std::size_t k = 0; k < n; ++k)
            run->fit.weighted_energy += run->w[k] * run->norms[k];
        std::int64_t sum_rank = 0, sum_width = 0;
        for (const auto p : run->members) {
            const auto ri = batch.adapters[p].rank;
            sum_rank += ri;
            sum_width += std::min(r, ri);
        }
        run->strat_u = detail::choose_strategy(options.eigen, batch.d_out, r, sum_rank, sum_width, iters);
        run->strat_v = detail::choose_strategy(options.eigen, batch.d_in, r, sum_rank, sum_width, iters);
        run->init_u = detail::choose_strategy(options.eigen, batch.d_out, r, sum_rank, sum_rank, 3 * iters);
        run->init_v = detail::choose_strategy(options.eigen, batch.d_in, r, sum_rank, sum_rank, 3 * iters);
        run->fit.eigen_used = run->strat_u;
        run->fill = random_stream::derive(options.seed, {0xf111});
        run->lu.assign(n, matrix());
        run->lv.assign(n, matrix());
    }

    // Init: warm starts (orthonormalized: a JD-Diag basis is not orthonormal; a JD-Full one barely
    // changes), HOSVD (U from sum_k w_k B_k (A_k A_k^T) B_k^T, V from sum_k w_k A_k^T (B_k^T B_k) A_k), or
    // random.
    std::vector<full_run*> warm, hosvd;
    for (full_run* run : runs) {
        if (run->warm != nullptr && !run->warm->empty()) {
            warm.push_back(run);
        } else if (options.init == jd_init::hosvd) {
            hosvd.push_back(run);
        } else {
            auto g = random_stream::derive(options.seed, {1});
            run->u = random_orthonormal(batch.d_out, r, g);
            run->v = random_orthonormal(batch.d_in, r, g);
        }
    }
    if (!warm.empty()) {
        std::vector<matrix> wu, wv;
        for (const full_run* run : warm) {
            wu.push_back(run->warm->u);
            wv.push_back(run->warm->v);
        }
        auto qu = so.qr(std::move(wu)), qv = so.qr(std::move(wv));
        for (std::size_t i = 0; i < warm.size(); ++i) {
            warm[i]->u = std::move(qu[i].first);
            warm[i]->v = std::move(qv[i].first);
        }
    }
    if (!hosvd.empty()) {
        const auto groups = groups_of(hosvd);
        const auto gb = so.block_grams(U, groups), ga = so.block_grams(V, groups);
        std::vector<std::vector<matrix>> lu(hosvd.size()), lv(hosvd.size());
        std::vector<eigen_strategy> su, sv;
        for (std::size_t i = 0; i < hosvd.size(); ++i) {
            for (std::size_t k = 0; k < hosvd[i]->members.size(); ++k) {
                hosvd[i]->lu[k] = factor_from_gram(ga[i][k], hosvd[i]->w[k]);
                hosvd[i]->lv[k] = factor_from_gram(gb[i][k], hosvd[i]->w[k]);
            }
            lu[i] = hosvd[i]->lu;
            lv[i] = hosvd[i]->lv;
            su.push_back(hosvd[i]->init_u);
            sv.push_back(hosvd[i]->init_v);
        }
        const std::vector<const matrix*> none(hosvd.size(), nullptr);
        auto u = top_subspaces(so, batch, U, hosvd, lu, r, su, none, 3 * iters);
        auto v = top_subspaces(so, batch, V, hosvd, lv, r, sv, none, 3 * iters);
        for (std::size_t i = 0; i < hosvd.size(); ++i) {
            hosvd[i]->u = std::move(u[i]);
            hosvd[i]->v = std::move(v[i]);
        }
    }
    {
        auto qb = project_runs(so, U, runs);
        auto pa = project_runs(so, V, runs);
        for (std::size_t i = 0; i < runs.size(); ++i) {
            runs[i]->qb = std::move(qb[i]);
            runs[i]->pa = std::move(pa[i]);
            runs[i]->f = full_objective(runs[i]->qb, runs[i]->pa, runs[i]->w);
            runs[i]->fit.objective.push_back(runs[i]->f);
        }
    }

    for (int sweep = 0; sweep < options.max_sweeps; ++sweep) {
        std::vector<full_run*> act;
        for (full_run* run : runs)
            if (!run->done) act.push_back(run);
        if (act.empty()) break;
        const auto n = act.size();
        const auto old_u = half_sweep(so, batch, side_u, act, r, iters);
        const auto old_v = half_sweep(so, batch, side_v, act, r, iters);
        for (std::size_t i = 0; i < n; ++i) {
            full_run& run = *act[i];
            const double f_new = full_objective(run.qb, run.pa, run.w);
            const double change =
                std::max(subspace_change(old_u[i], run.u), subspace_change(old_v[i], run.v));
            run.fit.objective.push_back(f_new);
            run.fit.sweeps = sweep + 1;
            const double gain = f_new - run.f;
            run.f = f_new;
            if (change < options.tol || gain <= options.objective_tol * std::max(f_new, 1e-300)) {
                run.fit.converged = true;
                run.done = true;
            }
        }
    }
    for (full_run* run : runs) {
        run->fit.cores.resize(run->members.size());
        for (std::size_t k = 0; k < run->members.size(); ++k)
            run->fit.cores[k] = detail::full_core(run->qb[k], run->pa[k]);
        run->fit.basis.u = std::move(run->u);
        run->fit.basis.v = std::move(run->v);
    }
}

// JD-Diag's sigma-step (method.md §4): sigma_k = G^-1 diag(U^T dW_k V), G = (U^T U) o (V^T V); returns the
// objective.
double sigma_step(diag_run& run, std::int64_t r) {
    const dmatrix g = hadamard(gram_d(run.u), gram_d(run.v));
    const auto gf = detail::factor_spd(g);
    double obj = 0.0;
    for (std::size_t k = 0; k < run.members.size(); ++k) {
        const auto b = detail::diag_rhs(run.qb[k], run.pa[k]);
        run.sigma[k] = solve_vec(gf, b);
        double sb = 0.0;
        for (std::int64_t j = 0; j < r; ++j)
            sb += run.sigma[k][static_cast<std::size_t>(j)] * b[static_cast<std::size_t>(j)];
        obj += run.w[k] * (run.norms[k] - 2.0 * sb + quad(g, run.sigma[k]));
    }
    return obj;
}

// JD-Diag's U- (or V-) step for every run: X = (sum_k w_k T_k P_k diag(sigma_k)) H^-1 with
// H = sum_k w_k (Y^T Y) o (sigma_k sigma_k^T), P = A_k V (or B_k^T U), Y the other factor; one grouped
// accumulate for all runs. Sets each run's new factor and returns the objectives.
std::vector<double> factor_steps(step_ops& so, ops_side side, const std::vector<diag_run*>& runs,
                                 std::int64_t r) {
    const auto n = runs.size();
    std::vector<matrix> stacked(n);
    std::vector<dmatrix> h(n);
    for (std::size_t i = 0; i < n; ++i) {
        diag_run& run = *runs[i];
        const auto& p = side == U ? run.pa : run.qb;
        const dmatrix yy = gram_d(side == U ? run.v : run.u);
        h[i] = dmatrix(r, r);
        std::vector<matrix> z(run.members.size());
        for (std::size_t k = 0; k < z.size(); ++k) {
            z[k] = p[k];
            for (std::int64_t j = 0; j < r; ++j) {
                const double sj = run.sigma[k][static_cast<std::size_t>(j)];
                const auto sc = static_cast<float>(run.w[k] * sj);
                for (std::int64_t a = 0; a < z[k].rows; ++a)
                    z[k](a, j) *= sc;
                if (run.w[k] != 0.0)
                    for (std::int64_t a = 0; a < r; ++a)
                        h[i](a, j) += run.w[k] * yy(a, j) * run.sigma[k][static_cast<std::size_t>(a)] * sj;
            }
        }
        stacked[i] = stack_rows(so.layout(run.group), z);
    }
    const auto rhs = so.accumulate(side, groups_of(runs), stacked);
    std::vector<double> obj(n);
    for (std::size_t i = 0; i < n; ++i) {
        diag_run& run = *runs[i];
        const auto hf = detail::factor_spd(h[i]);
        matrix x = solve_right(hf, rhs[i]);
        obj[i] =
            run.fit.weighted_energy - 2.0 * dot(x.view(), rhs[i].view()) + dot(gram_d(x).view(), h[i].view());
        (side == U ? run.u : run.v) = std::move(x);
    }
    return obj;
}

// JD-Diag (ALS, method.md §4) of every run in lock-step, each initialized from a JD-Full fit with the same
// options (run in lock-step too) or from its warm basis.
void run_diag(step_ops& so, const module_batch& batch, const std::vector<diag_run*>& runs,
              const jd_options& options) {
    const auto r = options.rank;
    std::vector<diag_run*> cold;
    for (diag_run* run : runs) {
        run->fit.basis.method = jd_method::diag;
        run->fit.members.assign(run->members.begin(), run->members.end());
        if (run->warm != nullptr && !run->warm->empty()) {
            run->u = run->warm->u;
            run->v = run->warm->v;
        } else {
            cold.push_back(run);
        }
    }
    if (!cold.empty()) {
        jd_options full_options = options;
        full_options.method = jd_method::full;
        std::vector<full_run> init(cold.size());
        std::vector<full_run*> init_runs;
        for (std::size_t i = 0; i < cold.size(); ++i) {
            init[i].group = cold[i]->group;
            init[i].members = cold[i]->members;
            init_runs.push_back(&init[i]);
        }
        run_full(so, batch, init_runs, full_options);
        for (std::size_t i = 0; i < cold.size(); ++i) {
            cold[i]->fit.eigen_used = init[i].fit.eigen_used;
            cold[i]->u = std::move(init[i].fit.basis.u);
            cold[i]->v = std::move(init[i].fit.basis.v);
        }
    }
    fill_norms(so, batch, runs);
    for (diag_run* run : runs) {
        run->w = detail::fit_weights(options.norm, run->norms);
        for (std::size_t k = 0; k < run->members.size(); ++k)
            run->fit.weighted_energy += run->w[k] * run->norms[k];
        run->sigma.assign(run->members.size(), {});
    }
    {
        auto qb = project_runs(so, U, runs);
        auto pa = project_runs(so, V, runs);
        for (std::size_t i = 0; i < runs.size(); ++i) {
            runs[i]->qb = std::move(qb[i]);
            runs[i]->pa = std::move(pa[i]);
            runs[i]->obj = sigma_step(*runs[i], r);
            runs[i]->fit.objective.push_back(runs[i]->obj);
            runs[i]->fit.step_objective.push_back(runs[i]->obj);
        }
    }
    for (int sweep = 0; sweep < options.diag_max_sweeps; ++sweep) {
        std::vector<diag_run*> act;
        for (diag_run* run : runs)
            if (!run->done) act.push_back(run);
        if (act.empty()) break;
        if (sweep > 0)
            for (diag_run* run : act)
                run->fit.step_objective.push_back(sigma_step(*run, r));
        const auto ou = factor_steps(so, U, act, r);
        for (std::size_t i = 0; i < act.size(); ++i)
            act[i]->fit.step_objective.push_back(ou[i]);
        auto qb = project_runs(so, U, act);
        for (std::size_t i = 0; i < act.size(); ++i)
            act[i]->qb = std::move(qb[i]);
        const auto ov = factor_steps(so, V, act, r);
        for (std::size_t i = 0; i < act.size(); ++i)
            act[i]->fit.step_objective.push_back(ov[i]);
        auto pa = project_runs(so, V, act);
        for (std::size_t i = 0; i < act.size(); ++i) {
            diag_run& run = *act[i];
            run.pa = std::move(pa[i]);
            matrix& u = run.u;
            matrix& v = run.v;
            for (std::int64_t j = 0; j < r; ++j) { // gauge: unit-norm columns, magnitudes into sigma
                const double a = std::sqrt(frobenius2(u.view().block_cols(j, 1)));
                const double b = std::sqrt(frobenius2(v.view().block_cols(j, 1)));
                if (a == 0.0 || b == 0.0) continue;
                const auto ia = static_cast<float>(1.0 / a), ib = static_cast<float>(1.0 / b);
                for (std::int64_t x = 0; x < u.rows; ++x)
                    u(x, j) *= ia;
                for (std::int64_t x = 0; x < v.rows; ++x)
                    v(x, j) *= ib;
                for (std::size_t k = 0; k < run.members.size(); ++k) {
                    run.sigma[k][static_cast<std::size_t>(j)] *= a * b;
                    for (std::int64_t x = 0; x < run.qb[k].rows; ++x)
                        run.qb[k](x, j) *= ia;
                    for (std::int64_t x = 0; x < run.pa[k].rows; ++x)
                        run.pa[k](x, j) *= ib;
                }
            }
            const double o = ov[i];
            run.fit.objective.push_back(o);
            run.fit.sweeps = sweep + 1;
            const double prev = run.obj;
            run.obj = o;
            if (prev - o <= options.diag_tol * std::max(prev, 1e-300) ||
                o <= 1e-12 * run.fit.weighted_energy) {
                run.fit.converged = true;
                run.done = true;
            }
        }
    }
    for (diag_run* run : runs) {
        const double final_obj = sigma_step(*run, r);
        run->fit.step_objective.push_back(final_obj);
        run->fit.objective.back() = final_obj;
        run->fit.cores.resize(run->members.size());
        for (std::size_t k = 0; k < run->members.size(); ++k) {
            run->fit.cores[k] = matrix(r, 1);
            for (std::int64_t j = 0; j < r; ++j)
                run->fit.cores[k](j, 0) = static_cast<float>(run->sigma[k][static_cast<std::size_t>(j)]);
        }
        run->fit.basis.u = std::move(run->u);
        run->fit.basis.v = std::move(run->v);
    }
}

// One run per cluster (cluster c is working set c, warm-started from warm[c] when given), advanced
// together by `drive` (run_full or run_diag); their fits in cluster order.
template <class Run, class Drive>
std::vector<jd_fit> fit_all(step_ops& so, const module_batch& batch,
                            std::span<const std::vector<std::size_t>> clusters, const jd_options& options,
                            std::span<const jd_basis* const> warm, Drive drive) {
    std::vector<Run> runs(clusters.size());
    std::vector<Run*> ptr;
    for (std::size_t c = 0; c < clusters.size(); ++c) {
        runs[c].group = c;
        runs[c].members = clusters[c];
        runs[c].warm = warm.empty() ? nullptr : warm[c];
        ptr.push_back(&runs[c]);
    }
    drive(so, batch, ptr, options);
    std::vector<jd_fit> out(clusters.size());
    for (std::size_t c = 0; c < clusters.size(); ++c)
        out[c] = std::move(runs[c].fit);
    return out;
}

// Fits `clusters` (already checked) with `so` set up over them: cluster c is working set c.
std::vector<jd_fit> fit_runs(step_ops& so, const module_batch& batch,
                             std::span<const std::vector<std::size_t>> clusters, const jd_options& options,
                             std::span<const jd_basis* const> warm) {
    if (options.method == jd_method::full)
        return fit_all<full_run>(so, batch, clusters, options, warm, run_full);
    return fit_all<diag_run>(so, batch, clusters, options, warm, run_diag);
}

// The checks fit() makes before any product: members, rank, and a warm basis that fits.
void check_cluster(const module_batch& batch, std::span<const std::size_t> members, const jd_options& options,
                   const jd_basis* warm, const char* what) {
    detail::check_members(batch, members, what);
    detail::check_rank(batch, options.rank);
    if (warm != nullptr && !warm->empty()) check_warm(batch, *warm, options.rank);
}

} // namespace

jd_fit OpsBackend::fit_jd_full(const module_batch& batch, std::span<const std::size_t> members,
                               const jd_options& options, const jd_basis* warm) {
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    check_cluster(batch, members, options, warm, "fit_jd_full");
    m_ops->select(batch, members);
    step_ops so(*m_ops, true);
    jd_options o = options;
    o.method = jd_method::full;
    const std::vector<std::size_t> cluster(members.begin(), members.end());
    return std::move(fit_runs(so, batch, std::span(&cluster, 1), o, std::span(&warm, 1)).front());
}

jd_fit OpsBackend::fit_jd_diag(const module_batch& batch, std::span<const std::size_t> members,
                               const jd_options& options, const jd_basis* warm) {
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    check_cluster(batch, members, options, warm, "fit_jd_diag");
    m_ops->select(batch, members);
    step_ops so(*m_ops, true);
    jd_options o = options;
    o.method = jd_method::diag;
    const std::vector<std::size_t> cluster(members.begin(), members.end());
    return std::move(fit_runs(so, batch, std::span(&cluster, 1), o, std::span(&warm, 1)).front());
}

std::vector<jd_fit> OpsBackend::fit_clusters(const module_batch& batch,
                                             std::span<const std::vector<std::size_t>> clusters,
                                             const jd_options& options,
                                             std::span<const jd_basis* const> warm) {
    check_fit_clusters(batch, clusters, warm);
    if (clusters.empty()) return {};
    // One cluster: fit() itself (the ops may parallelize inside it).
    if (clusters.size() == 1) return {fit(batch, clusters[0], options, warm.empty() ? nullptr : warm[0])};
    blas_threads_guard blas(1); // host-side products are r x r: threads only add overhead
    batch.validate();
    for (std::size_t c = 0; c < clusters.size(); ++c)
        check_cluster(batch, clusters[c], options, warm.empty() ? nullptr : warm[c], "fit_clusters");
    m_ops->select_groups(batch, clusters);
    step_ops so(*m_ops, false);
    return fit_runs(so, batch, clusters, options, warm);
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
