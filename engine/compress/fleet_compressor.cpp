// The fleet driver (see fleet_compressor.hpp for the pass structure). Invariants kept here:
//  - at most one module_batch is alive at a time in the driver (streaming); with prefetch_modules the
//    source holds one more, the next module, loading on its background thread;
//  - ||dW_i||^2 of every (module, adapter) is computed once, on the first load, and reused;
//  - every random choice comes from random_stream::derive(options.jd.seed, {...}), so a run is
//    reproducible for a fixed backend thread count.
#include "engine/compress/fleet_compressor.hpp"

#include "engine/compress/jd_steps.hpp"
#include "engine/compress/prefetching_module_source.hpp"
#include "engine/compress/random_matrix.hpp"
#include "engine/compress/reassignment.hpp"
#include "engine/core/error.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <time.h>

namespace lorafleet::compress {

namespace {

using steady = std::chrono::steady_clock;

double seconds_since(steady::time_point t0) {
    return std::chrono::duration<double>(steady::now() - t0).count();
}

// CPU time of the whole process (every thread), for the pass log: on a loaded machine it says more about
// the work done than the wall time.
double process_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
// Dimension of the projected clustering features (see ensure_features).
constexpr std::size_t projected_features = 256;

// What one pass over the fleet produces for a given assignment.
struct pass_state {
    std::vector<std::vector<jd_basis>> bases; // [cluster][module]
    std::vector<std::vector<matrix>> cores;   // [adapter][module]
    std::vector<std::vector<double>> errors;  // [adapter][module], relative
    dmatrix totals;                           // [adapter, cluster] sum over modules of relative residuals
    std::vector<int> assignment;              // [adapter] what the pass fitted
    std::vector<std::vector<char>> converged; // [cluster][module] the fit met a tolerance (or was reused)
};

void compute_aggregates(compression_result& r) {
    const auto n = r.assignment.size(), nm = r.modules.size();
    r.adapter_error.assign(n, nan_v);
    r.module_error.assign(nm, nan_v);
    r.cluster_error.assign(static_cast<std::size_t>(r.k), nan_v);
    r.cluster_size.assign(static_cast<std::size_t>(r.k), 0);
    r.max_module_error = 0.0;
    std::vector<double> msum(nm, 0.0);
    std::vector<int> mcount(nm, 0);
    for (std::size_t i = 0; i < n; ++i) {
        double s = 0.0;
        int c = 0;
        for (std::size_t m = 0; m < nm; ++m) {
            const double e = r.errors[i][m];
            if (std::isnan(e)) continue;
            s += e;
            ++c;
            msum[m] += e;
            ++mcount[m];
            r.max_module_error = std::max(r.max_module_error, e);
        }
        if (c > 0) r.adapter_error[i] = s / c;
    }
    for (std::size_t m = 0; m < nm; ++m)
        if (mcount[m] > 0) r.module_error[m] = msum[m] / mcount[m];
    std::vector<double> csum(static_cast<std::size_t>(r.k), 0.0);
    std::vector<int> ccount(static_cast<std::size_t>(r.k), 0);
    double total = 0.0;
    int counted = 0;
    r.max_error = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto c = static_cast<std::size_t>(r.assignment[i]);
        ++r.cluster_size[c];
        if (std::isnan(r.adapter_error[i])) continue;
        csum[c] += r.adapter_error[i];
        ++ccount[c];
        total += r.adapter_error[i];
        ++counted;
        r.max_error = std::max(r.max_error, r.adapter_error[i]);
    }
    for (std::size_t c = 0; c < csum.size(); ++c)
        if (ccount[c] > 0) r.cluster_error[c] = csum[c] / ccount[c];
    r.mean_error = counted > 0 ? total / counted : 0.0;
}

class fleet_driver {
public:
    // `prefetch` (may be null) is `source` itself when it prefetches; the driver tells it which module
    // comes next where that is not simply m + 1.
    fleet_driver(ModuleSource& source, CompressBackend& backend, const compress_options& options,
                 const progress_callback& progress, PrefetchingModuleSource* prefetch)
        : m_src(source), m_backend(backend), m_opt(options), m_progress(progress), m_prefetch(prefetch) {}

    compression_result run();

private:
    module_batch load(std::size_t m, const std::string& stage);
    void report(const std::string& stage, const std::string& module);
    void plan_at_least(double units) { m_expected = std::max(m_expected, m_done + units); }

    // One pass over the fleet. `last` (may be null): the previous pass; its bases are the warm starts of
    // the same clusters' fits, and a cluster whose members are the same as in `last` and whose fit there
    // converged is not fitted again (its basis, cores and errors are taken over: a warm-started fit
    // would stop after one sweep that moves the basis by less than the tolerance).
    pass_state run_pass(const std::vector<int>& assignment, int k, bool with_residuals,
                        const std::string& stage, const pass_state* last = nullptr, int sweep_limit = 0);
    compression_result cluster_k(int k, const compression_result* warm);
    compression_result finish(pass_state&& pass, const std::vector<int>& assignment, int k, int iterations);

    void ensure_features();
    // k-means++ then Lloyd on the features of `points` (best of kmeans_restarts); labels per point.
    std::vector<int> kmeans(const std::vector<std::size_t>& points, int k, std::uint64_t stream);
    std::vector<int> kmeans_init(int k);
    std::vector<int> warm_start(const compression_result& warm, int k);
    bool try_escape(std::vector<int>& assignment, const dmatrix& totals, int k);
    bool resplit_pair(std::vector<int>& assignment, const dmatrix& totals, int k, int worst);
    double feature_dist2(std::size_t i, const std::vector<double>& centroid) const;
    // The fp noise margin of a value summed from the fleet's per-module residuals (see reassignment.hpp),
    // and the lowest cluster index (other than `skip`) within it of row's minimum (-1: none).
    double noise(double v) const { return 1e-6 * std::abs(v) + m_noise; }
    int lowest_near_min(const dmatrix& totals, std::int64_t row, int k, int skip) const;
    std::uint64_t fit_seed(int cluster, std::size_t module) const;
    // Brings m_res[m] (relative residuals [position, cluster] of module m) up to date for `bases`:
    // recomputes the columns whose basis moved more than residual_drift_tol since they were computed
    // (`previous`: the bases the cached columns were last compared with), reuses the rest.
    void update_residuals(const module_batch& batch, std::size_t m,
                          const std::vector<std::vector<jd_basis>>& bases,
                          const std::vector<std::vector<jd_basis>>* previous, int k);
    std::vector<int> module_counts() const; // [adapter] modules it has (after the first pass)

    ModuleSource& m_src;
    CompressBackend& m_backend;
    compress_options m_opt;
    const progress_callback& m_progress;
    PrefetchingModuleSource* m_prefetch = nullptr;

    std::size_t m_n = 0;
    std::vector<module_shape> m_shapes;
    std::vector<std::vector<double>> m_norms; // [module][adapter], NaN = adapter lacks the module
    std::vector<bool> m_norms_known;          // [module]
    std::vector<dmatrix> m_res;               // [module] cached relative residuals [position, cluster]
    std::vector<std::vector<double>> m_drift; // [module][cluster] basis movement since computed
    int m_residual_columns = 0;               // residual columns computed in the current pass

    std::vector<float> m_features; // [adapter][feature] row-major
    std::size_t m_feature_dim = 0;
    bool m_have_features = false;
    int m_escapes = 0;
    double m_noise = 0.0; // 1e-5 sqrt(sum of the adapters' module counts), set by the first alternation pass

    compression_timing m_timing;
    steady::time_point m_t0 = steady::now();
    double m_done = 0.0;     // module loads so far
    double m_expected = 1.0; // estimated module loads in all
    double m_reported = 0.0; // last fraction reported (kept non-decreasing)
};

void fleet_driver::report(const std::string& stage, const std::string& module) {
    if (!m_progress) return;
    progress_info info;
    info.fraction = std::clamp(m_done / std::max(m_expected, 1.0), m_reported, 1.0);
    m_reported = info.fraction;
    info.stage = stage;
    info.module = module;
    const double elapsed = seconds_since(m_t0);
    info.eta_seconds = info.fraction > 0.0 ? elapsed * (1.0 - info.fraction) / info.fraction : -1.0;
    if (!m_progress(info))
        throw cancelled_error("compress",
                              "cancelled during " + stage + (module.empty() ? "" : " at " + module));
}

module_batch fleet_driver::load(std::size_t m, const std::string& stage) {
    const auto& shape = m_shapes[m];
    report(stage, shape.name);
    const auto t0 = steady::now();
    module_batch batch = m_src.load(m);
    m_timing.load_s += seconds_since(t0);
    m_done += 1.0;
    batch.validate();
    if (batch.d_out != shape.d_out || batch.d_in != shape.d_in)
        throw shape_mismatch(shape.name, "loaded factors are " + std::to_string(batch.d_out) + "x" +
                                             std::to_string(batch.d_in) + ", the source declared " +
                                             std::to_string(shape.d_out) + "x" + std::to_string(shape.d_in));
    std::vector<bool> seen(m_n, false);
    for (const auto& f : batch.adapters) {
        if (f.adapter >= m_n || seen[f.adapter])
            throw validation_error(shape.name, "adapter index " + std::to_string(f.adapter) +
                                                   (f.adapter >= m_n ? " out of range" : " appears twice"));
        seen[f.adapter] = true;
    }
    if (!m_norms_known[m]) {
        const auto t1 = steady::now();
        const auto norms = m_backend.norms2(batch);
        m_timing.error_s += seconds_since(t1);
        for (std::size_t p = 0; p < batch.size(); ++p)
            m_norms[m][batch.adapters[p].adapter] = norms[p];
        m_norms_known[m] = true;
    }
    batch.norms2.resize(batch.size());
    for (std::size_t p = 0; p < batch.size(); ++p) {
        const double v = m_norms[m][batch.adapters[p].adapter];
        if (std::isnan(v))
            throw validation_error(shape.name, "the source returned a different adapter set on a later pass");
        batch.norms2[p] = v;
    }
    return batch;
}

std::uint64_t fleet_driver::fit_seed(int cluster, std::size_t module) const {
    std::uint64_t s = m_opt.jd.seed ^ (static_cast<std::uint64_t>(cluster) << 40) ^ module;
    return splitmix64(s);
}

void fleet_driver::update_residuals(const module_batch& batch, std::size_t m,
                                    const std::vector<std::vector<jd_basis>>& bases,
                                    const std::vector<std::vector<jd_basis>>* previous, int k) {
    const auto kk = static_cast<std::size_t>(k);
    const auto n = batch.size();
    constexpr double never = std::numeric_limits<double>::infinity();
    if (m_res[m].rows != static_cast<std::int64_t>(m_n) || m_res[m].cols != k) {
        m_res[m] = dmatrix(static_cast<std::int64_t>(m_n), k);
        m_drift[m].assign(kk, never);
    }
    dmatrix& cache = m_res[m];
    std::vector<const jd_basis*> todo;
    std::vector<std::int64_t> columns;
    for (std::size_t c = 0; c < kk; ++c) {
        const jd_basis& now = bases[c][m];
        double& drift = m_drift[m][c];
        const auto col = static_cast<std::int64_t>(c);
        if (now.empty()) { // captures nothing: the residual is ||dW||^2, exactly
            for (std::size_t p = 0; p < n; ++p)
                cache(static_cast<std::int64_t>(batch.adapters[p].adapter), col) =
                    batch.norms2[p] > 0.0 ? 1.0 : 0.0;
            drift = never; // a later basis is compared with nothing: recomputed
            continue;
        }
        const jd_basis* before = previous != nullptr && c < previous->size() ? &(*previous)[c][m] : nullptr;
        if (m_opt.residual_drift_tol <= 0.0 || before == nullptr || before->empty() ||
            now.method != jd_method::full || before->method != jd_method::full ||
            before->rank() != now.rank())
            drift = never;
        else if (drift < never)
            drift +=
                detail::projector_distance(before->u, now.u) + detail::projector_distance(before->v, now.v);
        if (drift > m_opt.residual_drift_tol) {
            todo.push_back(&now);
            columns.push_back(col);
            drift = 0.0;
        }
    }
    m_residual_columns += static_cast<int>(columns.size());
    if (todo.empty()) return;
    const auto all = all_positions(batch);
    const dmatrix res = m_backend.residuals(batch, todo, all);
    for (std::size_t j = 0; j < columns.size(); ++j)
        for (std::size_t p = 0; p < n; ++p) {
            const double n2 = batch.norms2[p];
            cache(static_cast<std::int64_t>(batch.adapters[p].adapter), columns[j]) =
                n2 > 0.0 ? res(static_cast<std::int64_t>(p), static_cast<std::int64_t>(j)) / n2 : 0.0;
        }
}

pass_state fleet_driver::run_pass(const std::vector<int>& assignment, int k, bool with_residuals,
                                  const std::string& stage, const pass_state* last, int sweep_limit) {
    const std::vector<std::vector<jd_basis>>* warm = last != nullptr ? &last->bases : nullptr;
    const auto kk = static_cast<std::size_t>(k);
    // Clusters whose members are exactly those of the last pass.
    std::vector<char> same(kk, last != nullptr && last->assignment.size() == m_n ? 1 : 0);
    if (last != nullptr && last->assignment.size() == m_n)
        for (std::size_t i = 0; i < m_n; ++i)
            if (assignment[i] != last->assignment[i]) {
                same[static_cast<std::size_t>(assignment[i])] = 0;
                if (static_cast<std::size_t>(last->assignment[i]) < kk)
                    same[static_cast<std::size_t>(last->assignment[i])] = 0;
            }
    const auto nm = m_shapes.size();
    plan_at_least(static_cast<double>(nm));
    const auto wall0 = steady::now();
    const double cpu0 = process_cpu_seconds();
    const compression_timing before = m_timing;
    pass_record rec;
    rec.stage = stage;
    pass_state st;
    st.bases.assign(static_cast<std::size_t>(k), std::vector<jd_basis>(nm));
    st.cores.assign(m_n, std::vector<matrix>(nm));
    st.errors.assign(m_n, std::vector<double>(nm, nan_v));
    if (with_residuals) st.totals = dmatrix(static_cast<std::int64_t>(m_n), k);
    st.assignment = assignment;
    st.converged.assign(kk, std::vector<char>(nm, 0));
    jd_options o = m_opt.jd;
    if (sweep_limit > 0) o.max_sweeps = std::min(o.max_sweeps, sweep_limit);
    rec.sweep_limit = o.max_sweeps;
    for (std::size_t m = 0; m < nm; ++m) {
        const module_batch batch = load(m, stage);
        std::vector<std::vector<std::size_t>> members(static_cast<std::size_t>(k));
        for (std::size_t p = 0; p < batch.size(); ++p)
            members[static_cast<std::size_t>(assignment[batch.adapters[p].adapter])].push_back(p);
        // Every cluster with members in this module, fitted in one backend call (a backend may batch them).
        std::vector<int> fitted;
        std::vector<std::vector<std::size_t>> groups;
        std::vector<const jd_basis*> starts;
        for (int c = 0; c < k; ++c) {
            const auto cc = static_cast<std::size_t>(c);
            auto& mem = members[cc];
            if (mem.empty()) continue;
            if (same[cc] != 0 && last->converged[cc][m] != 0 && !last->bases[cc][m].empty()) {
                st.bases[cc][m] = last->bases[cc][m];
                st.converged[cc][m] = 1;
                for (const auto p : mem) {
                    const auto a = batch.adapters[p].adapter;
                    st.cores[a][m] = last->cores[a][m];
                    st.errors[a][m] = last->errors[a][m];
                }
                ++rec.reused;
                continue;
            }
            fitted.push_back(c);
            groups.push_back(std::move(mem));
            starts.push_back(warm != nullptr && static_cast<std::size_t>(c) < warm->size()
                                 ? &(*warm)[static_cast<std::size_t>(c)][m]
                                 : nullptr);
        }
        o.seed = fit_seed(0, m);
        auto t0 = steady::now();
        std::vector<jd_fit> fits = m_backend.fit_clusters(batch, groups, o, starts);
        m_timing.fit_s += seconds_since(t0);
        for (std::size_t j = 0; j < fitted.size(); ++j) {
            const int c = fitted[j];
            const auto& mem = groups[j];
            jd_fit& fit = fits[j];
            ++rec.fits;
            rec.sweeps += fit.sweeps;
            rec.max_sweeps = std::max(rec.max_sweeps, fit.sweeps);
            rec.converged += fit.converged ? 1 : 0;
            st.converged[static_cast<std::size_t>(c)][m] = fit.converged ? 1 : 0;
            t0 = steady::now();
            const auto err = m_backend.errors(batch, fit.basis, mem, fit.cores);
            m_timing.error_s += seconds_since(t0);
            for (std::size_t q = 0; q < mem.size(); ++q) {
                const auto a = batch.adapters[mem[q]].adapter;
                const double n2 = batch.norms2[mem[q]];
                st.cores[a][m] = std::move(fit.cores[q]);
                st.errors[a][m] = n2 > 0.0 ? err[q] / n2 : 0.0; // a zero adapter is reproduced exactly
            }
            st.bases[static_cast<std::size_t>(c)][m] = std::move(fit.basis);
        }
        if (with_residuals) {
            t0 = steady::now();
            update_residuals(batch, m, st.bases, warm, k);
            m_timing.residual_s += seconds_since(t0);
            const dmatrix& res = m_res[m];
            for (std::size_t p = 0; p < batch.size(); ++p) {
                if (batch.norms2[p] <= 0.0) continue;
                const auto a = static_cast<std::int64_t>(batch.adapters[p].adapter);
                for (int c = 0; c < k; ++c)
                    st.totals(a, c) += res(a, c);
            }
        }
    }
    if (with_residuals) // an adapter's residual in its own cluster is its exact error
        for (std::size_t i = 0; i < m_n; ++i) {
            double own = 0.0;
            for (std::size_t m = 0; m < nm; ++m)
                if (!std::isnan(st.errors[i][m]) && m_norms[m][i] > 0.0) own += st.errors[i][m];
            st.totals(static_cast<std::int64_t>(i), assignment[i]) = own;
        }
    ++m_timing.passes;
    rec.seconds = seconds_since(wall0);
    rec.cpu_s = process_cpu_seconds() - cpu0;
    rec.fit_s = m_timing.fit_s - before.fit_s;
    rec.residual_s = m_timing.residual_s - before.residual_s;
    rec.error_s = m_timing.error_s - before.error_s;
    rec.load_s = m_timing.load_s - before.load_s;
    rec.residual_columns = m_residual_columns;
    m_residual_columns = 0;
    m_timing.pass_log.push_back(std::move(rec));
    return st;
}

compression_result fleet_driver::finish(pass_state&& pass, const std::vector<int>& assignment, int k,
                                        int iterations) {
    compression_result r;
    r.method = m_opt.jd.method;
    r.rank = m_opt.jd.rank;
    r.k = k;
    r.adapter_names.reserve(m_n);
    for (std::size_t i = 0; i < m_n; ++i)
        r.adapter_names.push_back(m_src.adapter_name(i));
    r.modules = m_shapes;
    r.assignment = assignment;
    r.bases = std::move(pass.bases);
    r.cores = std::move(pass.cores);
    r.errors = std::move(pass.errors);
    r.cluster_iterations = iterations;
    compute_aggregates(r);
    return r;
}

// ---- Features and initial assignments ------------------------------------------------------------

void fleet_driver::ensure_features() {
    if (m_have_features) return;
    const auto t0 = steady::now();
    const auto nm = m_shapes.size();
    const std::size_t wanted =
        std::clamp<std::size_t>(static_cast<std::size_t>(std::max(1, m_opt.feature_modules)), 1, nm);
    // Evenly spaced modules (layers early to late), then as many as the feature budget allows.
    std::vector<std::size_t> chosen;
    std::vector<std::int64_t> ranks;
    std::size_t raw_dim = 0;
    const auto budget = std::max<std::size_t>(m_opt.feature_budget, 2);
    for (std::size_t j = 0; j < wanted; ++j) {
        const std::size_t m = (2 * j + 1) * nm / (2 * wanted);
        const auto& s = m_shapes[m];
        auto rg = std::min({std::max<std::int64_t>(1, m_opt.feature_rank), s.d_out, s.d_in});
        while (rg > 1 && static_cast<std::size_t>(2 * rg * rg) > budget)
            --rg;
        const auto block = static_cast<std::size_t>(2 * rg * rg);
        if (!chosen.empty() && raw_dim + block > budget) break;
        chosen.push_back(m);
        ranks.push_back(rg);
        raw_dim += block;
    }
    // k-means runs on a seeded Gaussian projection to at most projected_features dimensions
    // (Johnson-Lindenstrauss: distances kept to a few percent), which keeps its cost independent of the
    // raw feature size.
    const bool project = raw_dim > projected_features;
    m_feature_dim = project ? projected_features : raw_dim;
    matrix features(static_cast<std::int64_t>(m_feature_dim), static_cast<std::int64_t>(m_n)); // [dim, n]
    plan_at_least(static_cast<double>(chosen.size()));
    std::size_t offset = 0;
    for (std::size_t j = 0; j < chosen.size(); ++j) {
        const auto rg = ranks[j];
        const auto block = 2 * rg * rg;
        if (m_prefetch) m_prefetch->expect(j + 1 < chosen.size() ? chosen[j + 1] : 0); // then a full pass
        const module_batch batch = load(chosen[j], "features");
        matrix raw(block, static_cast<std::int64_t>(m_n)); // [block, n]
        if (batch.size() > 0) {
            // A two-sided random sketch Y_i = Om_out^T dW_i Om_in [rg, rg] of every adapter (Om seeded,
            // orthonormal): one projection of the factors per side, ~2 d R rg flops. Features are the
            // projectors onto the column and row spaces of Y_i (directions above 1e-3 of the largest
            // singular value, equally weighted, normalized): adapters of one task family share a range
            // whatever their cores, so k-means sees tight blobs; a shared basis of rank r holds a
            // cluster exactly when its members' ranges coincide, which is what these distances measure.
            auto g = random_stream::derive(m_opt.jd.seed, {0x5e7c4000ull + chosen[j]});
            jd_basis sketch;
            sketch.method = jd_method::full;
            sketch.u = random_orthonormal(batch.d_out, rg, g);
            sketch.v = random_orthonormal(batch.d_in, rg, g);
            const auto ys = m_backend.project(batch, sketch, all_positions(batch));
            const auto h = static_cast<float>(std::sqrt(0.5));
            for (std::size_t p = 0; p < batch.size(); ++p) {
                const matrix& y = ys[p];
                float* col = raw.col(static_cast<std::int64_t>(batch.adapters[p].adapter));
                for (int side = 0; side < 2; ++side) {
                    const matrix gram = side == 0 ? gemm(op::n, y, op::t, y) : gemm(op::t, y, op::n, y);
                    const auto eig = top_eigenvectors(to_double(gram), rg);
                    const double top = eig.values.empty() ? 0.0 : eig.values[0];
                    if (!(top > 0.0)) continue; // a zero adapter: no feature
                    std::int64_t keep = 0;
                    while (keep < rg && eig.values[static_cast<std::size_t>(keep)] > 1e-6 * top)
                        ++keep;
                    const double scale = static_cast<double>(h) / std::sqrt(static_cast<double>(keep));
                    float* out = col + static_cast<std::size_t>(side) * static_cast<std::size_t>(rg * rg);
                    for (std::int64_t b = 0; b < rg; ++b)
                        for (std::int64_t a = 0; a < rg; ++a) {
                            double v = 0.0;
                            for (std::int64_t q = 0; q < keep; ++q)
                                v += eig.vectors(a, q) * eig.vectors(b, q);
                            out[a + b * rg] = static_cast<float>(v * scale);
                        }
                }
            }
        }
        if (project) {
            auto g = random_stream::derive(m_opt.jd.seed, {0x9e0000ull + chosen[j]});
            matrix omega = gaussian_matrix(block, static_cast<std::int64_t>(m_feature_dim), g);
            const auto scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(m_feature_dim)));
            for (auto& x : omega.data)
                x *= scale;
            gemm(op::t, omega, op::n, raw, features.mut(), 1.0f, 1.0f);
        } else {
            for (std::int64_t i = 0; i < raw.cols; ++i)
                std::copy(raw.col(i), raw.col(i) + block, features.col(i) + offset);
        }
        offset += static_cast<std::size_t>(block);
    }
    m_features = std::move(features.data);
    m_have_features = true;
    m_timing.feature_s += seconds_since(t0);
}

double fleet_driver::feature_dist2(std::size_t i, const std::vector<double>& centroid) const {
    const float* row = m_features.data() + i * m_feature_dim;
    double d = 0.0;
    for (std::size_t q = 0; q < m_feature_dim; ++q) {
        const double x = row[q] - centroid[q];
        d += x * x;
    }
    return d;
}

std::vector<int> fleet_driver::kmeans(const std::vector<std::size_t>& points, int k, std::uint64_t stream) {
    const auto t0 = steady::now();
    const auto kk = static_cast<std::size_t>(k), np = points.size();
    const auto dim = m_feature_dim;
    auto centroid_of = [&](std::size_t i) {
        return std::vector<double>(m_features.begin() + static_cast<std::ptrdiff_t>(i * dim),
                                   m_features.begin() + static_cast<std::ptrdiff_t>((i + 1) * dim));
    };
    std::vector<int> best;
    double best_inertia = std::numeric_limits<double>::infinity();
    for (int restart = 0; restart < std::max(1, m_opt.kmeans_restarts); ++restart) {
        auto g =
            random_stream::derive(m_opt.jd.seed, {stream * 1000003ull + static_cast<std::uint64_t>(restart)});
        // Greedy k-means++ seeding: each new centroid is the best of 2 + ln k candidates drawn by D^2
        // sampling (the one that lowers the potential sum_p D^2 the most; uniform among the rest when all
        // D^2 are 0). Plain D^2 sampling often leaves two of many well-separated blobs on one seed, which
        // Lloyd then cannot undo.
        std::vector<std::vector<double>> centroids;
        std::vector<bool> taken(np, false);
        std::vector<double> d2(np, std::numeric_limits<double>::infinity());
        const int trials = 2 + static_cast<int>(std::log(static_cast<double>(std::max(k, 1))));
        while (centroids.size() < kk) {
            double sum = 0.0;
            for (std::size_t p = 0; p < np; ++p)
                if (!taken[p] && !centroids.empty()) sum += d2[p];
            std::size_t pick = np;
            double pick_potential = std::numeric_limits<double>::infinity();
            for (int t = 0; t < (sum > 0.0 ? trials : 1); ++t) {
                std::size_t cand = np;
                if (sum > 0.0) {
                    double u = g.uniform() * sum;
                    for (std::size_t p = 0; p < np; ++p) {
                        if (taken[p] || d2[p] <= 0.0) continue;
                        cand = p;
                        u -= d2[p];
                        if (u < 0.0) break;
                    }
                }
                if (cand == np) {
                    std::vector<std::size_t> free;
                    for (std::size_t p = 0; p < np; ++p)
                        if (!taken[p]) free.push_back(p);
                    cand = free[static_cast<std::size_t>(g.below(free.size()))];
                }
                if (sum <= 0.0) {
                    pick = cand;
                    break;
                }
                const auto c = centroid_of(points[cand]);
                double potential = 0.0;
                for (std::size_t p = 0; p < np; ++p)
                    potential += std::min(d2[p], feature_dist2(points[p], c));
                if (potential < pick_potential) {
                    pick_potential = potential;
                    pick = cand;
                }
            }
            taken[pick] = true;
            centroids.push_back(centroid_of(points[pick]));
            for (std::size_t p = 0; p < np; ++p)
                d2[p] = std::min(d2[p], feature_dist2(points[p], centroids.back()));
        }
        // Lloyd iterations.
        std::vector<int> assign(np, -1);
        double inertia = 0.0;
        for (int it = 0; it < 100; ++it) {
            bool changed = false;
            inertia = 0.0;
            for (std::size_t p = 0; p < np; ++p) {
                int arg = 0;
                double bd = std::numeric_limits<double>::infinity();
                for (std::size_t c = 0; c < kk; ++c) {
                    const double d = feature_dist2(points[p], centroids[c]);
                    if (d < bd) {
                        bd = d;
                        arg = static_cast<int>(c);
                    }
                }
                inertia += bd;
                if (assign[p] != arg) {
                    assign[p] = arg;
                    changed = true;
                }
            }
            if (!changed) break;
            std::vector<int> count(kk, 0);
            for (auto& c : centroids)
                std::fill(c.begin(), c.end(), 0.0);
            for (std::size_t p = 0; p < np; ++p) {
                auto& c = centroids[static_cast<std::size_t>(assign[p])];
                const float* row = m_features.data() + points[p] * dim;
                for (std::size_t q = 0; q < dim; ++q)
                    c[q] += row[q];
                ++count[static_cast<std::size_t>(assign[p])];
            }
            for (std::size_t c = 0; c < kk; ++c) {
                if (count[c] == 0) { // empty: re-seed at the point farthest from its centroid
                    std::size_t far = 0;
                    double fd = -1.0;
                    for (std::size_t p = 0; p < np; ++p) {
                        const double d =
                            feature_dist2(points[p], centroids[static_cast<std::size_t>(assign[p])]);
                        if (d > fd) {
                            fd = d;
                            far = p;
                        }
                    }
                    centroids[c] = centroid_of(points[far]);
                    continue;
                }
                for (auto& x : centroids[c])
                    x /= count[c];
            }
        }
        if (inertia < best_inertia) {
            best_inertia = inertia;
            best = assign;
        }
    }
    m_timing.feature_s += seconds_since(t0);
    return best; // Lloyd may leave a cluster empty in its last step; the alternation re-seeds it
}

std::vector<int> fleet_driver::kmeans_init(int k) {
    ensure_features();
    std::vector<std::size_t> all(m_n);
    std::iota(all.begin(), all.end(), std::size_t{0});
    return kmeans(all, k, static_cast<std::uint64_t>(k));
}

int fleet_driver::lowest_near_min(const dmatrix& totals, std::int64_t row, int k, int skip) const {
    double low = std::numeric_limits<double>::infinity();
    for (int c = 0; c < k; ++c)
        if (c != skip) low = std::min(low, totals(row, c));
    for (int c = 0; c < k; ++c)
        if (c != skip && totals(row, c) <= low + noise(low)) return c;
    return -1;
}

bool fleet_driver::resplit_pair(std::vector<int>& assignment, const dmatrix& totals, int k, int worst) {
    // The partner of the worst cluster: the runner-up cluster of most of its members.
    std::vector<int> votes(static_cast<std::size_t>(k), 0);
    for (std::size_t i = 0; i < m_n; ++i) {
        if (assignment[i] != worst) continue;
        const int second = lowest_near_min(totals, static_cast<std::int64_t>(i), k, worst);
        if (second >= 0) ++votes[static_cast<std::size_t>(second)];
    }
    const auto partner = static_cast<int>(std::max_element(votes.begin(), votes.end()) - votes.begin());
    if (partner == worst || votes[static_cast<std::size_t>(partner)] == 0) return false;
    std::vector<std::size_t> members;
    for (std::size_t i = 0; i < m_n; ++i)
        if (assignment[i] == worst || assignment[i] == partner) members.push_back(i);
    const auto halves = kmeans(members, 2, 0x9a1700ull + static_cast<std::uint64_t>(++m_escapes));
    std::vector<int> trial = assignment;
    for (std::size_t p = 0; p < members.size(); ++p)
        trial[members[p]] = halves[p] == 0 ? worst : partner;
    if (trial == assignment || std::count(trial.begin(), trial.end(), worst) == 0 ||
        std::count(trial.begin(), trial.end(), partner) == 0)
        return false;
    assignment = std::move(trial);
    return true;
}

std::vector<int> fleet_driver::warm_start(const compression_result& warm, int k) {
    ensure_features();
    std::vector<int> assign = warm.assignment;
    const int k0 = warm.k;
    const auto dim = m_feature_dim;
    std::vector<int> size(static_cast<std::size_t>(k), 0);
    for (const int c : assign)
        ++size[static_cast<std::size_t>(c)];
    // Centroids of the existing clusters; the distance to the nearest one makes later seeds diverse.
    std::vector<double> d2(m_n, std::numeric_limits<double>::infinity());
    for (int c = 0; c < k0; ++c) {
        std::vector<double> cen(dim, 0.0);
        int count = 0;
        for (std::size_t i = 0; i < m_n; ++i)
            if (assign[i] == c) {
                const float* row = m_features.data() + i * dim;
                for (std::size_t q = 0; q < dim; ++q)
                    cen[q] += row[q];
                ++count;
            }
        if (count == 0) continue;
        for (auto& x : cen)
            x /= count;
        for (std::size_t i = 0; i < m_n; ++i)
            d2[i] = std::min(d2[i], feature_dist2(i, cen));
    }
    auto g = random_stream::derive(m_opt.jd.seed, {0x77a40000ull + static_cast<std::uint64_t>(k)});
    for (int c = k0; c < k; ++c) {
        // The first new cluster starts at the worst-fit adapter; the next ones are drawn with probability
        // proportional to (error x squared feature distance to every centroid so far).
        std::size_t pick = m_n;
        double best = -1.0, sum = 0.0;
        std::vector<double> weight(m_n, 0.0);
        for (std::size_t i = 0; i < m_n; ++i) {
            if (size[static_cast<std::size_t>(assign[i])] < 2) continue;
            const double e = std::isnan(warm.adapter_error[i]) ? 0.0 : warm.adapter_error[i];
            if (c == k0) {
                if (e > best) {
                    best = e;
                    pick = i;
                }
            } else {
                weight[i] = e * (std::isinf(d2[i]) ? 1.0 : d2[i]);
                sum += weight[i];
                if (pick == m_n || e > best) { // fallback when every weight is 0
                    best = e;
                    pick = i;
                }
            }
        }
        if (pick == m_n)
            break; // every cluster is a singleton: nothing to split (k <= n keeps this from happening)
        if (c > k0 && sum > 0.0) {
            double u = g.uniform() * sum;
            for (std::size_t i = 0; i < m_n; ++i) {
                if (weight[i] <= 0.0) continue;
                pick = i;
                u -= weight[i];
                if (u < 0.0) break;
            }
        }
        --size[static_cast<std::size_t>(assign[pick])];
        assign[pick] = c;
        ++size[static_cast<std::size_t>(c)];
        const std::vector<double> seed(m_features.begin() + static_cast<std::ptrdiff_t>(pick * dim),
                                       m_features.begin() + static_cast<std::ptrdiff_t>((pick + 1) * dim));
        for (std::size_t i = 0; i < m_n; ++i)
            d2[i] = std::min(d2[i], feature_dist2(i, seed));
    }
    return assign;
}

// ---- Clustering for one k, and the automatic search ---------------------------------------------

compression_result fleet_driver::cluster_k(int k, const compression_result* warm) {
    const std::string tag = "k=" + std::to_string(k);
    if (k == 1) {
        const std::vector<int> assign(m_n, 0);
        return finish(run_pass(assign, 1, false, "fit " + tag), assign, 1, 0);
    }
    std::vector<int> assign = warm != nullptr && warm->k < k ? warm_start(*warm, k) : kmeans_init(k);
    if (m_opt.max_cluster_iterations <= 0)
        return finish(run_pass(assign, k, false, "fit " + tag), assign, k, 0);
    plan_at_least(2.0 * static_cast<double>(m_shapes.size())); // typical: one pass and one check

    // Alternate (fit per cluster, reassign to the lowest total relative residual). Every pass fits the
    // assignment it was given, so any pass is a valid result: keep the best one (lowest total error).
    // When the alternation stalls (no move, too little progress, or a return to an assignment already
    // fitted) try an escape from the typical local minima of k-subspaces: (a) two clusters share one
    // group while another holds two groups: dissolve the cheapest cluster and split the worst one in two
    // (2-means on the features); (b) two clusters hold mixtures of the same groups: re-split their union
    // by 2-means. Escapes are bounded and stop when one does not lead to a better pass.
    // The last pass (warm starts and reused fits for the next one): `best` when that pass was the best,
    // else `spare`; so at most two passes' worth of bases and cores are alive.
    for (auto& d : m_drift) // the cached residuals belong to another k (or an earlier search step)
        std::fill(d.begin(), d.end(), std::numeric_limits<double>::infinity());
    const pass_state* previous = nullptr; // the last pass: `best` or `spare`
    pass_state spare;
    pass_state best;
    std::vector<int> best_assign;
    double best_obj = std::numeric_limits<double>::infinity();
    int best_it = 0, escapes_left = std::max(2, k / 2);
    bool improved_since_escape = true;
    bool best_limited = false; // the best pass ran with a sweep limit and some fit did not converge
    std::vector<std::vector<int>> visited;
    int limit = m_opt.moving_max_sweeps; // the first pass starts from the initial clustering: moving
    std::vector<int> counts;             // [adapter] modules it has
    double margin0 = 0.0;                // fp noise of a sum of all the adapters' per-module terms
    for (int it = 1; it <= m_opt.max_cluster_iterations; ++it) {
        pass_state pass =
            run_pass(assign, k, true, "cluster " + tag + " iteration " + std::to_string(it), previous, limit);
        const auto& rec = m_timing.pass_log.back();
        const bool limited = limit > 0 && rec.converged < rec.fits;
        if (counts.empty()) { // every module has been loaded once now
            counts = module_counts();
            margin0 = 1e-5 * std::sqrt(static_cast<double>(std::accumulate(counts.begin(), counts.end(), 0)));
            m_noise = margin0;
        }
        double obj = 0.0;
        for (std::size_t i = 0; i < m_n; ++i)
            obj += pass.totals(static_cast<std::int64_t>(i), assign[i]);
        const bool first = best_it == 0;
        const double margin = 1e-6 * std::min(obj, best_obj) + margin0;
        const bool better = first || obj < best_obj - margin;
        const bool progress = first || obj < best_obj - std::max(margin, m_opt.cluster_tol * best_obj);
        std::vector<int> next = reassign(assign, pass.totals, counts);
        reseed_empty_clusters(next, pass.totals, counts);
        int moved = 0;
        for (std::size_t i = 0; i < m_n; ++i)
            moved += next[i] != assign[i] ? 1 : 0;
        m_timing.pass_log.back().objective = obj;
        m_timing.pass_log.back().moved = moved;
        visited.push_back(assign);
        const dmatrix totals = pass.totals;
        if (better) {
            best_obj = obj;
            best = std::move(pass);
            best_assign = assign;
            best_it = it;
            best_limited = limited;
            previous = &best;
        } else {
            spare = std::move(pass);
            previous = &spare;
        }
        // The next pass runs with the sweep limit only while many adapters move.
        limit = 100 * moved > static_cast<int>(m_n) ? m_opt.moving_max_sweeps : 0;
        improved_since_escape = improved_since_escape || progress;
        const bool seen = std::find(visited.begin(), visited.end(), next) != visited.end();
        if (moved == 0 && limited && better) continue; // converge the fits of this assignment first
        if (moved == 0 || !progress || seen) {
            if (escapes_left == 0 || !improved_since_escape || !try_escape(next, totals, k)) break;
            --escapes_left;
            improved_since_escape = false;
            limit = m_opt.moving_max_sweeps;
        }
        assign = std::move(next);
    }
    if (best_limited) { // the best pass's fits stopped at the sweep limit: finish them from where they are
        const pass_state start = std::move(best);
        best = run_pass(best_assign, k, false, "cluster " + tag + " final", &start);
    }
    return finish(std::move(best), best_assign, k, best_it);
}

std::vector<int> fleet_driver::module_counts() const {
    std::vector<int> count(m_n, 0);
    for (const auto& per_module : m_norms)
        for (std::size_t i = 0; i < m_n; ++i)
            count[i] += std::isnan(per_module[i]) ? 0 : 1;
    return count;
}

bool fleet_driver::try_escape(std::vector<int>& assignment, const dmatrix& totals, int k) {
    const auto kk = static_cast<std::size_t>(k);
    std::vector<int> size(kk, 0);
    std::vector<double> err(kk, 0.0);
    for (std::size_t i = 0; i < m_n; ++i) {
        const auto c = static_cast<std::size_t>(assignment[i]);
        ++size[c];
        err[c] += totals(static_cast<std::int64_t>(i), assignment[i]);
    }
    // Extremes are taken as the lowest index within the fp noise margin of the extreme value, so that
    // backends whose residuals differ in the last bits choose the same clusters.
    double max_err = -1.0;
    for (int c = 0; c < k; ++c)
        if (size[static_cast<std::size_t>(c)] >= 2)
            max_err = std::max(max_err, err[static_cast<std::size_t>(c)]);
    if (max_err < 0.0) return false;
    int worst = -1;
    for (int c = 0; c < k && worst < 0; ++c)
        if (size[static_cast<std::size_t>(c)] >= 2 &&
            err[static_cast<std::size_t>(c)] >= max_err - noise(max_err))
            worst = c;
    // Cost of dissolving cluster a: its members move to their best other cluster.
    std::vector<double> costs(kk, std::numeric_limits<double>::infinity());
    double cheapest = std::numeric_limits<double>::infinity();
    for (int a = 0; a < k; ++a) {
        if (a == worst || size[static_cast<std::size_t>(a)] == 0) continue;
        double cost = 0.0;
        for (std::size_t i = 0; i < m_n; ++i) {
            if (assignment[i] != a) continue;
            const auto row = static_cast<std::int64_t>(i);
            double other = std::numeric_limits<double>::infinity();
            for (int c = 0; c < k; ++c)
                if (c != a) other = std::min(other, totals(row, c));
            cost += other - totals(row, a);
        }
        costs[static_cast<std::size_t>(a)] = cost;
        cheapest = std::min(cheapest, cost);
    }
    int dissolve = -1;
    for (int a = 0; a < k && dissolve < 0 && cheapest < std::numeric_limits<double>::infinity(); ++a)
        if (costs[static_cast<std::size_t>(a)] <= cheapest + noise(cheapest)) dissolve = a;
    if (dissolve < 0 || !(cheapest < 0.5 * err[static_cast<std::size_t>(worst)]))
        return resplit_pair(assignment, totals, k, worst);
    std::vector<int> trial = assignment;
    for (std::size_t i = 0; i < m_n; ++i) {
        const auto row = static_cast<std::int64_t>(i);
        if (trial[i] != dissolve) continue;
        trial[i] = lowest_near_min(totals, row, k, dissolve);
    }
    // Split the worst cluster in two by 2-means on the clustering features; the second half takes the
    // dissolved cluster's label. (A single seed adapter is not enough: a low-rank member spans only
    // part of its group's subspace and would not attract the rest.)
    std::vector<std::size_t> members;
    for (std::size_t i = 0; i < m_n; ++i)
        if (trial[i] == worst) members.push_back(i);
    if (members.size() < 2) return false;
    const auto halves = kmeans(members, 2, 0x5b11700ull + static_cast<std::uint64_t>(++m_escapes));
    std::size_t moved = 0;
    for (std::size_t p = 0; p < members.size(); ++p)
        if (halves[p] == 1) {
            trial[members[p]] = dissolve;
            ++moved;
        }
    if (moved == 0 || moved == members.size()) { // features cannot split it: seed from the worst-fit member
        for (const auto i : members)
            trial[i] = worst;
        std::size_t seed = members[0];
        for (const auto i : members)
            if (totals(static_cast<std::int64_t>(i), worst) > totals(static_cast<std::int64_t>(seed), worst))
                seed = i;
        trial[seed] = dissolve;
    }
    if (trial == assignment) return false;
    assignment = std::move(trial);
    return true;
}

// Keeps only what a warm start needs (assignment and errors), dropping bases and cores.
compression_result strip(compression_result r) {
    r.bases.clear();
    r.cores.clear();
    return r;
}

compression_result fleet_driver::run() {
    m_n = m_src.adapter_count();
    const auto nm = m_src.module_count();
    if (m_n == 0) throw usage_error("compress", "the fleet has no adapters");
    if (nm == 0) throw usage_error("compress", "the fleet has no modules");
    if (m_opt.clusters < 0) throw usage_error("compress", "cluster count must be >= 0 (0 = automatic)");
    for (std::size_t m = 0; m < nm; ++m) {
        m_shapes.push_back(m_src.module(m));
        const auto& s = m_shapes.back();
        const auto cap = std::min(s.d_out, s.d_in);
        if (m_opt.jd.rank < 1 || m_opt.jd.rank > cap)
            throw shape_mismatch(s.name, "joint rank r=" + std::to_string(m_opt.jd.rank) +
                                             " is outside [1, min(d_out, d_in)=" + std::to_string(cap) + "]");
    }
    m_norms.assign(nm, std::vector<double>(m_n, nan_v));
    m_norms_known.assign(nm, false);
    m_res.assign(nm, dmatrix());
    m_drift.assign(nm, {});
    const int cap = static_cast<int>(
        std::min<std::size_t>(static_cast<std::size_t>(std::max(1, m_opt.max_clusters)), m_n));

    compression_result result;
    if (m_opt.clusters > 0) {
        const int k = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(m_opt.clusters), m_n));
        plan_at_least(static_cast<double>(nm) * (k == 1 ? 1.0 : 2.2)); // feature modules + 2 passes
        result = cluster_k(k, nullptr);
        result.target_met = result.mean_error <= m_opt.target_error;
    } else {
        // Automatic k: double k until the target is met (each trial warm-started from the last failing
        // one by splitting its worst-fit adapters into new clusters), then bisect between the last failing
        // and the first passing k. Assumes the mean error falls with k, which holds for a good clustering
        // but is not guaranteed; the result is the smallest passing k the search met.
        plan_at_least(static_cast<double>(nm) * 8.0);
        auto meets = [&](const compression_result& r) { return r.mean_error <= m_opt.target_error; };
        std::vector<std::pair<int, double>> trials;
        compression_result lo = cluster_k(1, nullptr);
        trials.emplace_back(1, lo.mean_error);
        if (meets(lo) || cap == 1) {
            result = std::move(lo);
            result.target_met = meets(result);
        } else {
            compression_result hi;
            bool have_hi = false;
            lo = strip(std::move(lo));
            for (int k = 2;; k = std::min(2 * k, cap)) {
                plan_at_least(static_cast<double>(nm) * 3.5);
                compression_result rk = cluster_k(k, &lo);
                trials.emplace_back(k, rk.mean_error);
                if (meets(rk)) {
                    hi = std::move(rk);
                    have_hi = true;
                    break;
                }
                if (k == cap) { // the cap does not meet the target: return the cap's fit, flagged
                    result = std::move(rk);
                    break;
                }
                lo = strip(std::move(rk));
            }
            if (!have_hi) {
                result.target_met = false;
            } else {
                while (hi.k - lo.k > 1) {
                    const int mid = (lo.k + hi.k) / 2;
                    plan_at_least(static_cast<double>(nm) * 3.5);
                    compression_result rm = cluster_k(mid, &lo);
                    trials.emplace_back(mid, rm.mean_error);
                    if (meets(rm))
                        hi = std::move(rm);
                    else
                        lo = strip(std::move(rm));
                }
                result = std::move(hi);
                result.target_met = true;
            }
        }
        result.k_trials = std::move(trials);
    }
    m_timing.total_s = seconds_since(m_t0);
    result.timing = m_timing;
    m_done = m_expected;
    report("done", "");
    return result;
}

} // namespace

compression_result compress_fleet(ModuleSource& source, CompressBackend& backend,
                                  const compress_options& options, const progress_callback& progress) {
    if (!options.prefetch_modules) {
        fleet_driver driver(source, backend, options, progress, nullptr);
        return driver.run();
    }
    // Declared before the driver so that it outlives it; on an error or a cancel its destructor waits
    // for the one load in flight, if any.
    PrefetchingModuleSource prefetching(source);
    // The next module's device upload (if the backend has one) runs on the prefetch thread too.
    prefetching.on_prefetched([&backend](const module_batch& next) { backend.stage(next); });
    fleet_driver driver(prefetching, backend, options, progress, &prefetching);
    return driver.run();
}

adapter_projection add_adapter(const compression_result& result, ModuleSource& source, std::size_t adapter,
                               CompressBackend& backend) {
    if (adapter >= source.adapter_count())
        throw usage_error("add_adapter", "adapter index " + std::to_string(adapter) + " out of range");
    const auto nm = result.modules.size();
    const auto k = static_cast<std::size_t>(result.k);
    if (result.bases.size() != k)
        throw usage_error("add_adapter", "the result has no bases (a stripped result?)");
    adapter_projection out;
    std::vector<std::vector<matrix>> cores(k, std::vector<matrix>(nm));
    std::vector<std::vector<double>> errs(k, std::vector<double>(nm, nan_v));
    bool any = false;
    struct matched {
        std::size_t source_module, module;
        std::string name;
    };
    std::vector<matched> todo; // the modules to load, in the source's order
    for (std::size_t sm = 0; sm < source.module_count(); ++sm) {
        auto shape = source.module(sm);
        std::size_t m = nm;
        for (std::size_t j = 0; j < nm; ++j)
            if (result.modules[j].name == shape.name) m = j;
        if (m == nm)
            out.unmatched_modules.push_back(shape.name);
        else
            todo.push_back({sm, m, std::move(shape.name)});
    }
    PrefetchingModuleSource prefetching(source);
    for (std::size_t t = 0; t < todo.size(); ++t) {
        const auto sm = todo[t].source_module, m = todo[t].module;
        const auto& shape = todo[t];
        prefetching.expect(t + 1 < todo.size() ? todo[t + 1].source_module : source.module_count()); // none
        module_batch batch = prefetching.load(sm);
        batch.validate();
        if (batch.d_out != result.modules[m].d_out || batch.d_in != result.modules[m].d_in)
            throw shape_mismatch(shape.name,
                                 "the new adapter's module shape differs from the compressed fleet's");
        const auto it = std::find_if(batch.adapters.begin(), batch.adapters.end(),
                                     [&](const adapter_factors& f) { return f.adapter == adapter; });
        if (it == batch.adapters.end()) continue;
        module_batch one = batch; // a one-adapter view sharing the storage
        one.adapters = {*it};
        one.norms2.clear();
        one.norms2 = backend.norms2(one);
        const double n2 = one.norms2[0];
        const std::vector<std::size_t> pos{0};
        any = true;
        for (std::size_t c = 0; c < k; ++c) {
            const jd_basis& basis = result.bases[c][m];
            if (basis.empty()) {
                errs[c][m] = n2 > 0.0 ? 1.0 : 0.0; // nothing captured
                continue;
            }
            auto cc = backend.project(one, basis, pos);
            const auto e = backend.errors(one, basis, pos, cc);
            errs[c][m] = n2 > 0.0 ? e[0] / n2 : 0.0;
            cores[c][m] = std::move(cc[0]);
        }
    }
    if (!any)
        throw validation_error("add_adapter",
                               "the adapter has no module in common with the compressed fleet");
    out.cluster_mean_error.assign(k, nan_v);
    double best = std::numeric_limits<double>::infinity();
    for (std::size_t c = 0; c < k; ++c) {
        double s = 0.0;
        int count = 0;
        for (std::size_t m = 0; m < nm; ++m)
            if (!std::isnan(errs[c][m])) {
                s += errs[c][m];
                ++count;
            }
        out.cluster_mean_error[c] = s / count;
        if (out.cluster_mean_error[c] < best) {
            best = out.cluster_mean_error[c];
            out.cluster = static_cast<int>(c);
        }
    }
    out.mean_error = best;
    out.cores = std::move(cores[static_cast<std::size_t>(out.cluster)]);
    out.errors = std::move(errs[static_cast<std::size_t>(out.cluster)]);
    return out;
}

} // namespace lorafleet::compress
