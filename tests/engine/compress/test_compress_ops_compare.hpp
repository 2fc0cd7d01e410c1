// Shared checks that a CompressBackend under test agrees with a reference backend (the independent
// test::ReferenceBackend, tests/support/jd_reference.hpp) on planted fleets within fp32 tolerance: the
// same subspaces (principal angles), the same cores after aligning each basis column's sign
// (eigenvectors are defined up to sign), the same objectives, norms, residuals and errors. Used by
// tests/engine/compress/test_compress_ops.cpp (the CPU backend) and tests/kernels/test_compress_cuda.cpp
// (the CUDA backend, on a GPU). Header-only; each function runs QVERIFY2 checks and returns early on the
// first failure (Qt Test semantics).
#pragma once

#include "engine/compress/compress_backend.hpp"
#include "engine/core/error.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <string>

namespace lorafleet::test::ops_compare {

using namespace lorafleet::compress;

inline std::string msg(const char* what, double got, double want, double tol) {
    return std::string(what) + ": " + std::to_string(got) + " vs " + std::to_string(want) + " (tol " +
           std::to_string(tol) + ")";
}

// 1-module planted batch: `groups` groups, mixed adapter ranks, 5% noise, one zero-scale adapter when
// `with_zero` (its weight is 0 under unit normalization).
inline module_batch planted_batch(std::int64_t d_out, std::int64_t d_in, int groups, int per_group,
                                  bool diagonal, bool with_zero, std::uint64_t seed) {
    planted_fleet_options o;
    o.modules = {{"layers.0.q_proj", d_out, d_in}};
    o.groups = groups;
    o.adapters_per_group = per_group;
    o.subspace_rank = 4;
    if (!diagonal) o.adapter_ranks = {4, 2, 6, 3};
    o.diagonal_cores = diagonal;
    o.noise = 0.05;
    if (with_zero) o.scales = {1.0, 0.5, 2.0, 0.0, 1.5};
    o.seed = seed;
    auto fleet = make_planted_fleet(o);
    return fleet.source->load(0);
}

// Orthonormal basis of the columns (for the principal angles of non-orthonormal JD-Diag bases).
inline matrix orth(const matrix& a) {
    return orthonormalize(a);
}

// sum of sin^2 of the principal angles between span(a) and span(b) (both [d, r]): r - ||Qa^T Qb||^2.
inline double subspace_gap(const matrix& a, const matrix& b) {
    const matrix qa = orth(a), qb = orth(b);
    return std::max(0.0, static_cast<double>(a.cols) - frobenius2(gemm(op::t, qa, op::n, qb)));
}

// Column signs that align b with a: sign of <a_j, b_j>.
inline std::vector<float> column_signs(const matrix& a, const matrix& b) {
    std::vector<float> s(static_cast<std::size_t>(a.cols), 1.0f);
    for (std::int64_t j = 0; j < a.cols; ++j) {
        double d = 0.0;
        for (std::int64_t i = 0; i < a.rows; ++i)
            d += static_cast<double>(a(i, j)) * b(i, j);
        s[static_cast<std::size_t>(j)] = d < 0.0 ? -1.0f : 1.0f;
    }
    return s;
}

// ||x - y||_F / max(||x||_F, floor).
inline double rel_diff(const matrix& x, const matrix& y, double floor = 1e-30) {
    double d = 0.0;
    for (std::size_t i = 0; i < x.data.size(); ++i)
        d += std::pow(static_cast<double>(x.data[i]) - y.data[i], 2);
    return std::sqrt(d) / std::max(std::sqrt(frobenius2(x.view())), floor);
}

// Both fits describe the same compression: subspaces, sign-aligned bases and cores, final objective.
inline void expect_same_fit(const jd_fit& ref, const jd_fit& got, double tol) {
    QCOMPARE(got.members, ref.members);
    QCOMPARE(got.basis.method, ref.basis.method);
    QCOMPARE(got.basis.u.rows, ref.basis.u.rows);
    QCOMPARE(got.basis.u.cols, ref.basis.u.cols);
    QCOMPARE(got.cores.size(), ref.cores.size());
    const double gu = subspace_gap(ref.basis.u, got.basis.u), gv = subspace_gap(ref.basis.v, got.basis.v);
    QVERIFY2(gu < tol && gv < tol,
             msg("principal angles (sum sin^2) U / V", std::max(gu, gv), 0.0, tol).c_str());
    const auto su = column_signs(ref.basis.u, got.basis.u), sv = column_signs(ref.basis.v, got.basis.v);
    matrix u = got.basis.u, v = got.basis.v;
    for (std::int64_t j = 0; j < u.cols; ++j) {
        for (std::int64_t i = 0; i < u.rows; ++i)
            u(i, j) *= su[static_cast<std::size_t>(j)];
        for (std::int64_t i = 0; i < v.rows; ++i)
            v(i, j) *= sv[static_cast<std::size_t>(j)];
    }
    const double du = rel_diff(ref.basis.u, u), dv = rel_diff(ref.basis.v, v);
    QVERIFY2(du < std::sqrt(tol) && dv < std::sqrt(tol),
             msg("aligned basis difference", std::max(du, dv), 0.0, std::sqrt(tol)).c_str());
    double worst = 0.0, scale = 0.0;
    for (std::size_t k = 0; k < ref.cores.size(); ++k) {
        matrix c = got.cores[k];
        QCOMPARE(c.rows, ref.cores[k].rows);
        QCOMPARE(c.cols, ref.cores[k].cols);
        for (std::int64_t j = 0; j < c.cols; ++j)
            for (std::int64_t i = 0; i < c.rows; ++i)
                c(i, j) *= c.cols == 1 ? su[static_cast<std::size_t>(i)] * sv[static_cast<std::size_t>(i)]
                                       : su[static_cast<std::size_t>(i)] * sv[static_cast<std::size_t>(j)];
        double d = 0.0;
        for (std::size_t i = 0; i < c.data.size(); ++i)
            d += std::pow(static_cast<double>(c.data[i]) - ref.cores[k].data[i], 2);
        worst = std::max(worst, std::sqrt(d));
        scale = std::max(scale, std::sqrt(frobenius2(ref.cores[k].view())));
    }
    QVERIFY2(worst <= std::sqrt(tol) * std::max(scale, 1e-30),
             msg("worst aligned core difference / largest core", worst / std::max(scale, 1e-30), 0.0,
                 std::sqrt(tol))
                 .c_str());
    QVERIFY(!got.objective.empty());
    const double fr = ref.objective.back(), fg = got.objective.back();
    const double ftol = tol * std::max(ref.weighted_energy, 1e-30);
    QVERIFY2(std::abs(fr - fg) <= ftol, msg("final objective", fg, fr, ftol).c_str());
    QVERIFY2(std::abs(ref.weighted_energy - got.weighted_energy) <=
                 1e-5 * std::max(ref.weighted_energy, 1e-30),
             msg("weighted energy", got.weighted_energy, ref.weighted_energy, 1e-5).c_str());
    // The objective's direction holds in the backend under test too.
    for (std::size_t i = 1; i < got.objective.size(); ++i) {
        const double a = got.objective[i - 1], b = got.objective[i];
        const double slack = 1e-5 * std::max(got.weighted_energy, 1e-30);
        if (got.basis.method == jd_method::full)
            QVERIFY2(b >= a - slack, msg("JD-Full objective decreased", b, a, slack).c_str());
        else
            QVERIFY2(b <= a + slack, msg("JD-Diag objective increased", b, a, slack).c_str());
    }
}

inline void expect_close_values(const std::vector<double>& ref, const std::vector<double>& got,
                                const std::vector<double>& scale, double tol, const char* what) {
    QCOMPARE(got.size(), ref.size());
    for (std::size_t k = 0; k < ref.size(); ++k) {
        const double t = tol * std::max(scale[k], 1e-30);
        QVERIFY2(std::abs(ref[k] - got[k]) <= t, msg(what, got[k], ref[k], t).c_str());
    }
}

// Norms, a fit, its errors, projection of the fit's basis, and residuals under several bases.
inline void expect_same_module_results(CompressBackend& ref, CompressBackend& got, const module_batch& batch,
                                       std::span<const std::size_t> members, const jd_options& options,
                                       double tol) {
    const auto n_ref = ref.norms2(batch), n_got = got.norms2(batch);
    expect_close_values(n_ref, n_got, n_ref, 1e-5, "norms2");
    if (QTest::currentTestFailed()) return;
    module_batch b = batch;
    b.norms2 = n_ref; // the driver's cached norms, as in fleet_compressor
    const jd_fit fr = ref.fit(b, members, options), fg = got.fit(b, members, options);
    expect_same_fit(fr, fg, tol);
    if (QTest::currentTestFailed()) return;

    std::vector<double> scale;
    for (const auto p : members)
        scale.push_back(n_ref[p]);
    // Errors of each backend's own fit agree (first order in the principal angles, hence sqrt(tol)), and
    // each backend evaluates the SAME cores alike (fp32 level).
    expect_close_values(ref.errors(b, fr.basis, members, fr.cores),
                        got.errors(b, fg.basis, members, fg.cores), scale, std::sqrt(tol),
                        "errors of own fit");
    if (QTest::currentTestFailed()) return;
    expect_close_values(ref.errors(b, fr.basis, members, fr.cores),
                        got.errors(b, fr.basis, members, fr.cores), scale, 1e-5,
                        "errors of the reference fit");
    if (QTest::currentTestFailed()) return;
    // Projection (§6) of all adapters onto the reference basis: identical cores up to fp32.
    const auto all = all_positions(b);
    const auto pr = ref.project(b, fr.basis, all), pg = got.project(b, fr.basis, all);
    QCOMPARE(pg.size(), pr.size());
    for (std::size_t k = 0; k < pr.size(); ++k) {
        const double d = rel_diff(pr[k], pg[k], 1e-20);
        QVERIFY2(d < 1e-3 || frobenius2(pr[k].view()) < 1e-20 * std::max(n_ref[k], 1e-30),
                 msg("projected core", d, 0.0, 1e-3).c_str());
    }
    // Residuals under [reference basis, nothing, the fit of the other backend].
    const jd_basis empty;
    const jd_basis* bases[] = {&fr.basis, nullptr, &empty, &fg.basis};
    const dmatrix rr = ref.residuals(b, bases, all), rg = got.residuals(b, bases, all);
    QCOMPARE(rg.rows, rr.rows);
    QCOMPARE(rg.cols, rr.cols);
    for (std::int64_t c = 0; c < rr.cols; ++c)
        for (std::int64_t k = 0; k < rr.rows; ++k) {
            const double t = 1e-5 * std::max(n_ref[static_cast<std::size_t>(k)], 1e-30);
            QVERIFY2(std::abs(rr(k, c) - rg(k, c)) <= t, msg("residual", rg(k, c), rr(k, c), t).c_str());
        }
}

// Bad input is rejected with the same exception types.
inline void expect_same_errors(CompressBackend& got, const module_batch& batch) {
    jd_options o;
    o.rank = 3;
    const std::vector<std::size_t> none;
    QVERIFY_THROWS_EXCEPTION(usage_error, got.fit_jd_full(batch, none, o));
    const std::vector<std::size_t> outside = {batch.size()};
    QVERIFY_THROWS_EXCEPTION(shape_mismatch, got.fit_jd_full(batch, outside, o));
    o.rank = std::min(batch.d_out, batch.d_in) + 1;
    const auto all = all_positions(batch);
    QVERIFY_THROWS_EXCEPTION(shape_mismatch, got.fit_jd_full(batch, all, o));
    jd_basis wrong;
    wrong.u = matrix(batch.d_out + 1, 2);
    wrong.v = matrix(batch.d_in, 2);
    QVERIFY_THROWS_EXCEPTION(shape_mismatch, got.project(batch, wrong, all));
    o.rank = 2;
    QVERIFY_THROWS_EXCEPTION(shape_mismatch, got.fit_jd_full(batch, all, o, &wrong));
    std::vector<matrix> cores(all.size() + 1, matrix(2, 2));
    jd_basis ok;
    ok.u = matrix(batch.d_out, 2);
    ok.v = matrix(batch.d_in, 2);
    QVERIFY_THROWS_EXCEPTION(shape_mismatch, got.errors(batch, ok, all, cores));
}

} // namespace lorafleet::test::ops_compare
