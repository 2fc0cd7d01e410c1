// The fleet driver's pass logic (fleet_compressor.cpp) on planted fleets whose answer is known: the
// alternation recovers the planted groups; its stop rule (no move / too little progress / a revisited
// assignment), the residual reuse and the sweep limit of moving passes never end with a worse objective
// than the exhaustive rule (every residual recomputed, no sweep limit, stop only when nothing moves);
// the partition does not depend on the backend's thread count; the pass log adds up.
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;
using namespace lorafleet::compress;
using lorafleet::test::make_planted_fleet;
using lorafleet::test::planted_fleet_options;
using lorafleet::test::same_partition;

namespace {

// Six groups with mixed ranks (a rank-2 member spans half of its group's subspace), optionally noisy.
planted_fleet_options harder_fleet(std::uint64_t seed, double noise) {
    planted_fleet_options po;
    po.modules = {{"l0.q", 64, 48}, {"l0.v", 32, 48}, {"l1.q", 64, 48}, {"l1.v", 32, 48}};
    po.groups = 6;
    po.adapters_per_group = 5;
    po.adapter_ranks = {4, 2, 4, 3};
    po.noise = noise;
    po.seed = seed;
    return po;
}

compress_options options_for(const planted_fleet_options& po, std::uint64_t seed) {
    compress_options o;
    o.jd.rank = po.subspace_rank;
    o.jd.seed = seed;
    o.clusters = po.groups;
    return o;
}

// The exhaustive rule: every residual column recomputed in every pass, fits never capped, the
// alternation stops only when no adapter moves (or at max_cluster_iterations).
compress_options exhaustive(compress_options o) {
    o.cluster_tol = 0.0;
    o.residual_drift_tol = 0.0;
    o.moving_max_sweeps = 0;
    return o;
}

double objective(const compression_result& r) { // sum of the adapters' mean relative errors
    double s = 0.0;
    for (const double e : r.adapter_error)
        if (!std::isnan(e)) s += e;
    return s;
}

} // namespace

class TestFleetPasses : public QObject {
    Q_OBJECT

    CpuBackend backend{cpu_backend_options{2}};

private slots:
    void planted_groups_are_recovered_in_few_passes() {
        for (const std::uint64_t seed : {1u, 2u, 3u, 4u, 5u, 6u}) {
            const auto po = harder_fleet(seed, seed % 2 == 0 ? 0.05 : 0.0);
            auto fleet = make_planted_fleet(po);
            const auto r = compress_fleet(*fleet.source, backend, options_for(po, seed));
            QVERIFY2(same_partition(r.assignment, fleet.labels), qPrintable(QString("seed %1").arg(seed)));
            QVERIFY(r.mean_error < (po.noise > 0.0 ? 0.02 : 1e-6));
            // The sketch features separate the groups: the first reassignment keeps the partition, a
            // second pass is only the check of an escape (or of converged fits) at most.
            QVERIFY2(r.timing.passes <= 3,
                     qPrintable(QString("seed %1: %2 passes").arg(seed).arg(r.timing.passes)));
        }
    }

    void the_stop_rule_is_never_worse_than_the_exhaustive_rule() {
        for (const std::uint64_t seed : {11u, 12u, 13u, 14u}) {
            // Noisy groups and a weak initial clustering (one feature module, a 2-wide sketch, one
            // k-means start), so that the alternation and its escapes have work to do.
            auto po = harder_fleet(seed, 0.08);
            auto fleet = make_planted_fleet(po);
            auto o = options_for(po, seed);
            o.feature_modules = 1;
            o.feature_rank = 2;
            o.kmeans_restarts = 1;
            const auto fast = compress_fleet(*fleet.source, backend, o);
            const auto slow = compress_fleet(*fleet.source, backend, exhaustive(o));
            qInfo("seed %d: %d passes (objective %.6f) vs exhaustive %d passes (%.6f)", int(seed),
                  fast.timing.passes, objective(fast), slow.timing.passes, objective(slow));
            for (const auto* r : {&fast, &slow})
                for (const auto& p : r->timing.pass_log)
                    qInfo("  %s: sweeps %d (max %d, limit %d) converged %d/%d reused %d objective %.6f moved "
                          "%d "
                          "columns %d",
                          p.stage.c_str(), p.sweeps, p.max_sweeps, p.sweep_limit, p.converged, p.fits,
                          p.reused, p.objective, p.moved, p.residual_columns);
            QVERIFY2(
                objective(fast) <= objective(slow) * (1.0 + 1e-4) + 1e-9,
                qPrintable(QString("seed %1: %2 > %3").arg(seed).arg(objective(fast)).arg(objective(slow))));
        }
    }

    void residual_reuse_gives_the_same_partition_with_fewer_products() {
        const auto po = harder_fleet(21, 0.05);
        auto fleet = make_planted_fleet(po);
        auto o = options_for(po, 21);
        o.moving_max_sweeps = 0;
        o.cluster_tol = 0.0;
        auto exact = o;
        exact.residual_drift_tol = 0.0;
        const auto reused = compress_fleet(*fleet.source, backend, o);
        const auto full = compress_fleet(*fleet.source, backend, exact);
        QCOMPARE(reused.assignment, full.assignment);
        QVERIFY(std::abs(reused.mean_error - full.mean_error) < 1e-6);
        int cols_reused = 0, cols_full = 0;
        for (const auto& p : reused.timing.pass_log)
            cols_reused += p.residual_columns;
        for (const auto& p : full.timing.pass_log)
            cols_full += p.residual_columns;
        const int nm = static_cast<int>(po.modules.size());
        // The exhaustive run computes every (module, cluster) column in every alternation pass.
        int alternation = 0;
        for (const auto& p : full.timing.pass_log)
            alternation += p.moved >= 0 ? 1 : 0;
        QCOMPARE(cols_full, alternation * nm * po.groups);
        if (reused.timing.passes > 1) QVERIFY(cols_reused < cols_full);
    }

    void the_partition_does_not_depend_on_the_thread_count() {
        for (const std::uint64_t seed : {31u, 32u}) {
            auto po = harder_fleet(seed, 0.08);
            po.adapters_per_group = 8;
            auto fleet = make_planted_fleet(po);
            auto o = options_for(po, seed);
            o.feature_modules = 1;
            CpuBackend one{cpu_backend_options{1}}, two{cpu_backend_options{2}};
            const auto r1 = compress_fleet(*fleet.source, one, o);
            const auto r2 = compress_fleet(*fleet.source, two, o);
            QCOMPARE(r1.assignment, r2.assignment); // the same labels, not only the same partition
            QCOMPARE(r1.timing.passes, r2.timing.passes);
            QCOMPARE(r1.cluster_iterations, r2.cluster_iterations);
            QVERIFY(std::abs(r1.mean_error - r2.mean_error) < 1e-6);
        }
    }

    void the_pass_log_adds_up() {
        const auto po = harder_fleet(41, 0.05);
        auto fleet = make_planted_fleet(po);
        const auto r = compress_fleet(*fleet.source, backend, options_for(po, 41));
        QCOMPARE(static_cast<int>(r.timing.pass_log.size()), r.timing.passes);
        double fit = 0.0;
        int fits = 0;
        for (const auto& p : r.timing.pass_log) {
            QVERIFY(!p.stage.empty());
            QVERIFY(p.fit_s >= 0.0 && p.seconds >= p.fit_s);
            QVERIFY(p.sweeps >= p.fits && p.max_sweeps <= p.sweep_limit);
            QVERIFY(p.converged <= p.fits);
            fit += p.fit_s;
            fits += p.fits + p.reused;
        }
        QVERIFY(std::abs(fit - r.timing.fit_s) < 1e-6);
        QCOMPARE(fits, r.timing.passes * static_cast<int>(po.modules.size()) * po.groups);
        // The best pass is the one returned (or refined by a final pass without a sweep limit): the
        // result's objective is at most that pass's (every adapter has every module here).
        const auto& best = r.timing.pass_log[static_cast<std::size_t>(r.cluster_iterations - 1)];
        QVERIFY(best.objective >= 0.0);
        QVERIFY(objective(r) * static_cast<double>(po.modules.size()) <=
                best.objective * (1.0 + 1e-6) + 1e-9);
        for (const auto& p : r.timing.pass_log)
            if (p.objective >= 0.0) QVERIFY(best.objective <= p.objective * (1.0 + 1e-6) + 1e-9);
    }
};

QTEST_APPLESS_MAIN(TestFleetPasses)
#include "test_fleet_passes.moc"
