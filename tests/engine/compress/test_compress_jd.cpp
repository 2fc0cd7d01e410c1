// Tests of the per-module compression algorithms of the CPU backend (method.md §2-§4, §6) against
// INDEPENDENT references: dense Delta W formed here in double, singular values from LAPACK's dgesvd for
// the HOSVD bound, and perturbation checks for least-squares optimality. Small shapes, mixed ranks.
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/random_matrix.hpp"
#include "engine/core/error.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <numeric>

#define LAPACK_COMPLEX_STRUCTURE
#include <lapacke.h>

using namespace lorafleet;
using namespace lorafleet::compress;
using lorafleet::test::dense_delta;
using lorafleet::test::dense_error;
using lorafleet::test::random_factors;

namespace {

module_batch random_batch(std::uint64_t seed, std::int64_t d_out, std::int64_t d_in,
                          const std::vector<std::int64_t>& ranks, const std::vector<double>& scales = {}) {
    random_stream g(seed);
    std::vector<owned_factors> f;
    for (std::size_t i = 0; i < ranks.size(); ++i)
        f.push_back(
            random_factors(i, ranks[i], d_out, d_in, g, scales.empty() ? 1.0 : scales[i % scales.size()]));
    return make_owned_module_batch("test.module", d_out, d_in, std::move(f));
}

double dense_norm2(const module_batch& b, std::size_t pos) {
    double s = 0.0;
    for (const double x : dense_delta(b, pos))
        s += x * x;
    return s;
}

// Squared singular values of a row-major [m, n] matrix, descending (LAPACK dgesvd, values only).
std::vector<double> singular_values2(std::vector<double> a, std::int64_t m, std::int64_t n) {
    std::vector<double> s(static_cast<std::size_t>(std::min(m, n))), superb(s.size());
    const auto info =
        LAPACKE_dgesvd(LAPACK_ROW_MAJOR, 'N', 'N', static_cast<lapack_int>(m), static_cast<lapack_int>(n),
                       a.data(), static_cast<lapack_int>(n), s.data(), nullptr, 1, nullptr, 1, superb.data());
    if (info != 0) qFatal("dgesvd failed");
    for (auto& x : s)
        x *= x;
    return s;
}

// The §3 HOSVD bound: tail energy beyond r of [w_1 dW_1 ... ] plus that of [w_1 dW_1^T ... ], where
// w_i scales adapter i (1 or 1 / ||dW_i|| for unit normalization).
double hosvd_bound(const module_batch& b, std::int64_t r, const std::vector<double>& scale) {
    const auto n = static_cast<std::int64_t>(b.size()), d_out = b.d_out, d_in = b.d_in;
    std::vector<double> wide(static_cast<std::size_t>(d_out * n * d_in)),
        tall(static_cast<std::size_t>(d_in * n * d_out));
    for (std::int64_t i = 0; i < n; ++i) {
        const auto w = dense_delta(b, static_cast<std::size_t>(i));
        for (std::int64_t row = 0; row < d_out; ++row)
            for (std::int64_t col = 0; col < d_in; ++col) {
                const double x =
                    w[static_cast<std::size_t>(row * d_in + col)] * scale[static_cast<std::size_t>(i)];
                wide[static_cast<std::size_t>(row * n * d_in + i * d_in + col)] = x;
                tall[static_cast<std::size_t>(col * n * d_out + i * d_out + row)] = x;
            }
    }
    const auto s1 = singular_values2(wide, d_out, n * d_in);
    const auto s2 = singular_values2(tall, d_in, n * d_out);
    double bound = 0.0;
    for (std::size_t k = static_cast<std::size_t>(r); k < s1.size(); ++k)
        bound += s1[k];
    for (std::size_t k = static_cast<std::size_t>(r); k < s2.size(); ++k)
        bound += s2[k];
    return bound;
}

const std::vector<eigen_strategy> all_strategies = {
    eigen_strategy::exact_small_gram, eigen_strategy::exact_large_gram, eigen_strategy::subspace};

} // namespace

class TestCompressJd : public QObject {
    Q_OBJECT

    CpuBackend backend{cpu_backend_options{2}};

private slots:
    void norms_match_dense() {
        const auto b = random_batch(1, 17, 13, {1, 4, 2}, {1.0, 3.0, 0.1});
        const auto n2 = backend.norms2(b);
        for (std::size_t i = 0; i < b.size(); ++i)
            QVERIFY(std::abs(n2[i] - dense_norm2(b, i)) <= 1e-10 * dense_norm2(b, i));
    }

    void factored_error_matches_dense_for_free_bases() {
        // Non-orthonormal U, V, full and diagonal cores, mixed ranks: the §2 formula against dense.
        const auto b = random_batch(2, 19, 11, {3, 1, 5});
        random_stream g(20);
        for (const bool diag : {false, true}) {
            jd_basis basis;
            basis.method = diag ? jd_method::diag : jd_method::full;
            basis.u = gaussian_matrix(19, 4, g);
            basis.v = gaussian_matrix(11, 4, g);
            std::vector<matrix> cores;
            for (std::size_t i = 0; i < b.size(); ++i)
                cores.push_back(gaussian_matrix(4, diag ? 1 : 4, g));
            const auto pos = all_positions(b);
            const auto e = backend.errors(b, basis, pos, cores);
            for (std::size_t i = 0; i < b.size(); ++i) {
                const double ref = dense_error(b, i, basis.u, cores[i], basis.v);
                QVERIFY2(std::abs(e[i] - ref) <= 1e-9 * ref,
                         qPrintable(QString("%1 vs %2").arg(e[i]).arg(ref)));
            }
        }
    }

    void jd_full_meets_hosvd_bound_and_never_decreases() {
        const std::vector<std::int64_t> ranks{3, 5, 2, 4, 6, 3};
        const auto b = random_batch(3, 30, 24, ranks, {1.0, 2.0, 0.5});
        const std::int64_t r = 6;
        for (const auto norm : {normalization::none, normalization::unit}) {
            std::vector<double> scale(b.size(), 1.0);
            if (norm == normalization::unit)
                for (std::size_t i = 0; i < b.size(); ++i)
                    scale[i] = 1.0 / std::sqrt(dense_norm2(b, i));
            const double bound = hosvd_bound(b, r, scale);
            for (const auto strategy : all_strategies) {
                jd_options o;
                o.rank = r;
                o.norm = norm;
                o.eigen = strategy;
                o.tol = 1e-6;
                o.objective_tol = 1e-9;
                const auto pos = all_positions(b);
                const jd_fit fit = backend.fit_jd_full(b, pos, o);
                QVERIFY(fit.objective.size() >= 2);
                for (std::size_t t = 1; t < fit.objective.size(); ++t)
                    QVERIFY2(fit.objective[t] >= fit.objective[t - 1] * (1.0 - 1e-5),
                             qPrintable(QString("sweep %1: %2 < %3")
                                            .arg(t)
                                            .arg(fit.objective[t])
                                            .arg(fit.objective[t - 1])));
                // Weighted error of the HOSVD init and of the final fit, both against the bound.
                const double init_err = fit.weighted_energy - fit.objective.front();
                const auto e = backend.errors(b, fit.basis, pos, fit.cores);
                double final_err = 0.0;
                for (std::size_t i = 0; i < b.size(); ++i)
                    final_err += e[i] * scale[i] * scale[i];
                const double slack = 1e-5 * fit.weighted_energy;
                if (strategy != eigen_strategy::subspace) // the bound needs an exact HOSVD
                    QVERIFY2(init_err <= bound + slack,
                             qPrintable(QString("init %1 > bound %2").arg(init_err).arg(bound)));
                QVERIFY2(final_err <= bound + slack,
                         qPrintable(QString("%1 > bound %2").arg(final_err).arg(bound)));
                QVERIFY(final_err <= init_err + slack);
                // With orthonormal U, V the error is energy - F.
                QVERIFY(std::abs(final_err - (fit.weighted_energy - fit.objective.back())) <= slack);
            }
        }
    }

    void rank_covering_all_adapters_is_exact() {
        const std::vector<std::int64_t> ranks{2, 3, 1, 2}; // sum 8
        const auto b = random_batch(4, 28, 20, ranks, {1.0, 10.0});
        const auto pos = all_positions(b);
        for (const std::int64_t r : {8, 10})
            for (const auto strategy : all_strategies)
                for (const auto method : {jd_method::full}) {
                    jd_options o;
                    o.rank = r;
                    o.eigen = strategy;
                    o.method = method;
                    const jd_fit fit = backend.fit(b, pos, o);
                    const auto e = backend.errors(b, fit.basis, pos, fit.cores);
                    for (std::size_t i = 0; i < b.size(); ++i)
                        QVERIFY2(
                            e[i] / dense_norm2(b, i) < 1e-6,
                            qPrintable(QString("r=%1 %2: %3").arg(r).arg(to_string(strategy)).arg(e[i])));
                }
    }

    void random_init_is_also_exact_at_full_rank() {
        const auto b = random_batch(5, 16, 14, {2, 2, 3});
        jd_options o;
        o.rank = 7;
        o.init = jd_init::random;
        o.max_sweeps = 60;
        const auto pos = all_positions(b);
        const jd_fit fit = backend.fit_jd_full(b, pos, o);
        const auto e = backend.errors(b, fit.basis, pos, fit.cores);
        for (std::size_t i = 0; i < b.size(); ++i)
            QVERIFY(e[i] / dense_norm2(b, i) < 1e-6);
    }

    void jd_full_cores_are_least_squares_optimal() {
        const auto b = random_batch(6, 22, 18, {4, 3, 5, 2});
        jd_options o;
        o.rank = 3;
        const auto pos = all_positions(b);
        const jd_fit fit = backend.fit_jd_full(b, pos, o);
        random_stream g(60);
        for (std::size_t i = 0; i < b.size(); ++i) {
            // Sigma_i = U^T dW_i V, checked densely.
            const auto w = dense_delta(b, i);
            for (std::int64_t p = 0; p < 3; ++p)
                for (std::int64_t q = 0; q < 3; ++q) {
                    double s = 0.0;
                    for (std::int64_t row = 0; row < b.d_out; ++row)
                        for (std::int64_t col = 0; col < b.d_in; ++col)
                            s += fit.basis.u(row, p) * w[static_cast<std::size_t>(row * b.d_in + col)] *
                                 fit.basis.v(col, q);
                    QVERIFY(std::abs(s - fit.cores[i](p, q)) <= 1e-4 * std::sqrt(dense_norm2(b, i)));
                }
            const double best = dense_error(b, i, fit.basis.u, fit.cores[i], fit.basis.v);
            for (int trial = 0; trial < 5; ++trial) {
                matrix s = fit.cores[i];
                const matrix d = gaussian_matrix(3, 3, g);
                for (std::size_t k = 0; k < s.data.size(); ++k)
                    s.data[k] += 1e-2f * d.data[k] * static_cast<float>(std::sqrt(dense_norm2(b, i)));
                QVERIFY(dense_error(b, i, fit.basis.u, s, fit.basis.v) > best);
            }
        }
    }

    void jd_diag_steps_never_increase() {
        const auto b = random_batch(7, 26, 20, {3, 4, 2, 5, 3}, {1.0, 0.3});
        const auto pos = all_positions(b);
        for (const auto norm : {normalization::unit, normalization::none}) {
            jd_options o;
            o.method = jd_method::diag;
            o.rank = 5;
            o.norm = norm;
            o.diag_max_sweeps = 40;
            o.diag_tol = 0.0; // run every sweep
            const jd_fit fit = backend.fit_jd_diag(b, pos, o);
            QVERIFY(fit.basis.method == jd_method::diag);
            QVERIFY(fit.step_objective.size() > 10);
            const double slack = 1e-5 * fit.weighted_energy;
            for (std::size_t t = 1; t < fit.step_objective.size(); ++t)
                QVERIFY2(fit.step_objective[t] <= fit.step_objective[t - 1] + slack,
                         qPrintable(QString("step %1: %2 > %3")
                                        .arg(t)
                                        .arg(fit.step_objective[t])
                                        .arg(fit.step_objective[t - 1])));
            QVERIFY(fit.objective.back() < fit.objective.front());
            // The recorded objective agrees with the exact errors of the returned cores.
            const auto e = backend.errors(b, fit.basis, pos, fit.cores);
            const auto n2 = backend.norms2(b);
            double weighted = 0.0;
            for (std::size_t i = 0; i < b.size(); ++i)
                weighted += e[i] * (norm == normalization::unit ? 1.0 / n2[i] : 1.0);
            QVERIFY(std::abs(weighted - fit.objective.back()) <= 1e-4 * fit.weighted_energy);
            // sigma = G^-1 diag(U^T dW V) is optimal: perturbing it increases the dense error.
            random_stream g(70);
            for (std::size_t i = 0; i < b.size(); ++i) {
                const double best = dense_error(b, i, fit.basis.u, fit.cores[i], fit.basis.v);
                matrix s = fit.cores[i];
                for (auto& x : s.data)
                    x += 1e-2f * static_cast<float>(g.normal() * std::sqrt(n2[i]));
                QVERIFY(dense_error(b, i, fit.basis.u, s, fit.basis.v) > best);
            }
        }
    }

    void jd_diag_is_exact_on_shared_diagonalizable_adapters() {
        // dW_i = U diag(s_i) V^T with one shared (U, V): JD-Diag at that rank is exact.
        random_stream g(8);
        const std::int64_t d_out = 20, d_in = 16, r = 3;
        const matrix u = random_orthonormal(d_out, r, g), v = random_orthonormal(d_in, r, g);
        std::vector<owned_factors> f;
        for (std::size_t i = 0; i < 5; ++i) {
            owned_factors x;
            x.adapter = i;
            x.rank = r;
            for (std::int64_t row = 0; row < r; ++row)
                for (std::int64_t col = 0; col < d_in; ++col)
                    x.a.push_back(v(col, row));
            const float s[3] = {static_cast<float>(1 + g.uniform()), static_cast<float>(g.normal()),
                                static_cast<float>(0.2 * g.normal())};
            for (std::int64_t row = 0; row < d_out; ++row)
                for (std::int64_t col = 0; col < r; ++col)
                    x.b.push_back(u(row, col) * s[col]);
            f.push_back(std::move(x));
        }
        const auto b = make_owned_module_batch("diag", d_out, d_in, std::move(f));
        jd_options o;
        o.method = jd_method::diag;
        o.rank = r;
        const auto pos = all_positions(b);
        const jd_fit fit = backend.fit(b, pos, o);
        const auto e = backend.errors(b, fit.basis, pos, fit.cores);
        for (std::size_t i = 0; i < b.size(); ++i)
            QVERIFY(e[i] / dense_norm2(b, i) < 1e-6);
    }

    void residuals_equal_errors_of_projected_cores() {
        const auto b = random_batch(9, 24, 18, {2, 5, 3, 4});
        const auto pos = all_positions(b);
        jd_options o;
        o.rank = 4;
        const jd_fit full = backend.fit(b, std::vector<std::size_t>{0, 1}, o);
        o.method = jd_method::diag;
        const jd_fit diag = backend.fit(b, std::vector<std::size_t>{2, 3}, o);
        const jd_basis empty;
        const std::vector<const jd_basis*> bases{&full.basis, &diag.basis, &empty, nullptr};
        const dmatrix res = backend.residuals(b, bases, pos);
        QCOMPARE(res.rows, std::int64_t(4));
        QCOMPARE(res.cols, std::int64_t(4));
        const auto n2 = backend.norms2(b);
        for (int c = 0; c < 2; ++c) {
            const jd_basis& basis = c == 0 ? full.basis : diag.basis;
            const auto cores = backend.project(b, basis, pos);
            const auto e = backend.errors(b, basis, pos, cores);
            for (std::size_t i = 0; i < b.size(); ++i)
                QVERIFY2(
                    std::abs(res(static_cast<std::int64_t>(i), c) - e[i]) <= 1e-4 * n2[i],
                    qPrintable(
                        QString("basis %1 adapter %2: %3 vs %4").arg(c).arg(i).arg(res(i, c)).arg(e[i])));
        }
        for (std::size_t i = 0; i < b.size(); ++i) {
            QCOMPARE(res(static_cast<std::int64_t>(i), 2), n2[i]);
            QCOMPARE(res(static_cast<std::int64_t>(i), 3), n2[i]);
        }
    }

    void projection_of_a_member_reproduces_its_core() {
        const auto b = random_batch(10, 21, 17, {3, 2, 4});
        const auto pos = all_positions(b);
        for (const auto method : {jd_method::full, jd_method::diag}) {
            jd_options o;
            o.rank = 3;
            o.method = method;
            const jd_fit fit = backend.fit(b, pos, o);
            const auto cores = backend.project(b, fit.basis, pos);
            for (std::size_t i = 0; i < b.size(); ++i) {
                QCOMPARE(cores[i].rows, fit.cores[i].rows);
                QCOMPARE(cores[i].cols, fit.cores[i].cols);
                const double scale = std::sqrt(backend.norms2(b)[i]);
                for (std::size_t k = 0; k < cores[i].data.size(); ++k)
                    QVERIFY(std::abs(cores[i].data[k] - fit.cores[i].data[k]) <= 1e-5 * scale);
            }
        }
    }

    void fits_are_deterministic_and_seeded() {
        const auto b = random_batch(11, 25, 19, {3, 4, 2, 3});
        const auto pos = all_positions(b);
        jd_options o;
        o.rank = 3;
        o.init = jd_init::random;
        o.seed = 1;
        o.max_sweeps = 2;
        const jd_fit a1 = backend.fit_jd_full(b, pos, o), a2 = backend.fit_jd_full(b, pos, o);
        QVERIFY(a1.basis.u.data == a2.basis.u.data);
        QVERIFY(a1.basis.v.data == a2.basis.v.data);
        QVERIFY(a1.objective == a2.objective);
        o.seed = 2;
        const jd_fit b1 = backend.fit_jd_full(b, pos, o);
        QVERIFY(a1.objective.front() != b1.objective.front()); // a different random start
        QVERIFY(a1.basis.u.data != b1.basis.u.data);
        // The same with another thread count gives the same objective up to rounding.
        CpuBackend one{cpu_backend_options{1}};
        o.seed = 1;
        const jd_fit c1 = one.fit_jd_full(b, pos, o);
        QVERIFY(std::abs(c1.objective.back() - a1.objective.back()) <= 1e-5 * a1.objective.back());
    }

    void strategies_reach_the_same_optimum() {
        const auto b = random_batch(12, 40, 32, {4, 4, 4, 4, 4, 4, 4, 4});
        const auto pos = all_positions(b);
        std::vector<double> finals;
        for (const auto strategy : all_strategies) {
            jd_options o;
            o.rank = 5;
            o.eigen = strategy;
            o.tol = 1e-7;
            o.objective_tol = 1e-10;
            o.max_sweeps = 200;
            const jd_fit fit = backend.fit_jd_full(b, pos, o);
            QVERIFY(fit.eigen_used == strategy);
            finals.push_back(fit.objective.back());
        }
        for (const double f : finals)
            QVERIFY2(std::abs(f - finals[0]) <= 1e-3 * finals[0],
                     qPrintable(QString("%1 vs %2").arg(f).arg(finals[0])));
    }

    void warm_start_resumes_a_converged_fit() {
        const auto b = random_batch(15, 30, 22, {4, 3, 5, 2, 4});
        const auto pos = all_positions(b);
        for (const auto method : {jd_method::full, jd_method::diag}) {
            jd_options o;
            o.rank = 4;
            o.method = method;
            o.max_sweeps = 500;
            o.tol = 1e-5;
            o.objective_tol = 0.0; // converge on the subspace change
            const jd_fit cold = backend.fit(b, pos, o);
            const jd_fit warm = backend.fit(b, pos, o, &cold.basis);
            QVERIFY2(warm.sweeps <= 3, qPrintable(QString("%1: %2 sweeps after %3")
                                                      .arg(to_string(method))
                                                      .arg(warm.sweeps)
                                                      .arg(cold.sweeps)));
            const double scale = std::abs(cold.objective.back()) + cold.weighted_energy;
            QVERIFY(std::abs(warm.objective.back() - cold.objective.back()) <= 1e-4 * scale);
            if (method == jd_method::full) // the warm start is the starting point: F never below it
                QVERIFY(warm.objective.front() >= cold.objective.back() * (1.0 - 1e-5));
        }
        jd_options o;
        o.rank = 3;
        const jd_fit other = backend.fit(b, pos, o);
        o.rank = 4;
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, backend.fit(b, pos, o, &other.basis));
        const jd_basis empty; // an empty warm basis means "no warm start"
        QCOMPARE(backend.fit(b, pos, o, &empty).basis.rank(), std::int64_t(4));
    }

    void zero_adapter_is_ignored_and_exact() {
        random_stream g(13);
        std::vector<owned_factors> f;
        f.push_back(random_factors(0, 2, 12, 10, g));
        owned_factors z = random_factors(1, 3, 12, 10, g);
        std::fill(z.b.begin(), z.b.end(), 0.0f);
        f.push_back(std::move(z));
        f.push_back(random_factors(2, 2, 12, 10, g));
        const auto b = make_owned_module_batch("zero", 12, 10, std::move(f));
        const auto pos = all_positions(b);
        QCOMPARE(backend.norms2(b)[1], 0.0);
        for (const auto method : {jd_method::full, jd_method::diag}) {
            jd_options o;
            o.rank = 4;
            o.method = method;
            const jd_fit fit = backend.fit(b, pos, o);
            QCOMPARE(fit.weighted_energy, 2.0); // two non-zero adapters, unit weights
            const auto e = backend.errors(b, fit.basis, pos, fit.cores);
            QVERIFY(e[1] <= 1e-12);
            if (method == jd_method::full) // rank 4 = 2 + 2 covers both non-zero adapters
                QVERIFY(e[0] / backend.norms2(b)[0] < 1e-6 && e[2] / backend.norms2(b)[2] < 1e-6);
        }
    }

    void bad_inputs_are_rejected() {
        const auto b = random_batch(14, 8, 6, {2, 2});
        const auto pos = all_positions(b);
        jd_options o;
        o.rank = 7; // > min(8, 6)
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, backend.fit_jd_full(b, pos, o));
        o.rank = 6; // == min: allowed, and exact (V spans everything)
        const jd_fit fit = backend.fit_jd_full(b, pos, o);
        QCOMPARE(fit.basis.rank(), std::int64_t(6));
        o.rank = 2;
        QVERIFY_THROWS_EXCEPTION(usage_error, backend.fit_jd_full(b, std::vector<std::size_t>{}, o));
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, backend.fit_jd_full(b, std::vector<std::size_t>{5}, o));
        jd_basis wrong;
        wrong.u = matrix(7, 2);
        wrong.v = matrix(6, 2);
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, backend.project(b, wrong, pos));
    }
};

QTEST_APPLESS_MAIN(TestCompressJd)
#include "test_compress_jd.moc"
