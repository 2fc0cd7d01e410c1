// Tests of the fleet driver (method.md §5, §6) on planted fleets whose answer is known by construction:
// K groups with rank-R subspaces compressed at rank R with K clusters must reconstruct every adapter to
// fp32 precision and recover the groups exactly (up to relabeling). Also the streaming contract (one
// module in memory, one load per module per pass), progress / cancellation, automatic k, incremental
// addition, determinism, normalization and missing modules.
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/core/error.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;
using namespace lorafleet::compress;
using lorafleet::test::make_planted_fleet;
using lorafleet::test::planted_fleet_options;
using lorafleet::test::same_partition;

namespace {

// Wraps a source and checks that at most one batch is alive at any time.
class CountingSource final : public ModuleSource {
public:
    explicit CountingSource(ModuleSource& inner) : m_inner(inner) {}

    std::size_t adapter_count() const override { return m_inner.adapter_count(); }
    std::size_t module_count() const override { return m_inner.module_count(); }
    module_shape module(std::size_t m) const override { return m_inner.module(m); }
    module_batch load(std::size_t m) override {
        module_batch b = m_inner.load(m);
        ++loads;
        if (*m_live > 0) overlapped = true;
        ++*m_live;
        auto live = m_live;
        auto keep = b.storage;
        b.storage = std::shared_ptr<const void>(new int(0), [live, keep](const int* p) {
            --*live;
            delete p;
        });
        return b;
    }

    int loads = 0;
    bool overlapped = false;

private:
    ModuleSource& m_inner;
    std::shared_ptr<int> m_live = std::make_shared<int>(0);
};

double max_finite_error(const compression_result& r) {
    double m = 0.0;
    for (const auto& row : r.errors)
        for (const double e : row)
            if (!std::isnan(e)) m = std::max(m, e);
    return m;
}

double orthonormality_defect(const matrix& q) {
    const matrix g = gemm(op::t, q, op::n, q);
    double m = 0.0;
    for (std::int64_t i = 0; i < g.rows; ++i)
        for (std::int64_t j = 0; j < g.cols; ++j)
            m = std::max(m, std::abs(g(i, j) - (i == j ? 1.0 : 0.0)));
    return m;
}

} // namespace

class TestCompressFleet : public QObject {
    Q_OBJECT

    CpuBackend backend{cpu_backend_options{2}};

private slots:
    void planted_clusters_are_recovered_exactly() {
        for (const std::uint64_t seed : {1u, 2u, 3u}) {
            planted_fleet_options po;
            po.seed = seed;
            auto fleet = make_planted_fleet(po);
            compress_options o;
            o.jd.rank = po.subspace_rank;
            o.jd.seed = seed;
            o.clusters = po.groups;
            const auto r = compress_fleet(*fleet.source, backend, o);
            QCOMPARE(r.k, 3);
            QVERIFY2(same_partition(r.assignment, fleet.labels), qPrintable(QString("seed %1").arg(seed)));
            QVERIFY2(max_finite_error(r) < 1e-6,
                     qPrintable(QString("max error %1").arg(max_finite_error(r))));
            QVERIFY(r.mean_error < 1e-6 && r.max_error < 1e-6 && r.max_module_error < 1e-6);
            for (const int s : r.cluster_size)
                QCOMPARE(s, 4);
            for (const auto& per_module : r.bases)
                for (const auto& b : per_module) {
                    QVERIFY(b.method == jd_method::full);
                    QVERIFY(orthonormality_defect(b.u) < 1e-5 && orthonormality_defect(b.v) < 1e-5);
                }
            for (std::size_t i = 0; i < r.cores.size(); ++i)
                for (const auto& c : r.cores[i])
                    QVERIFY(c.rows == 4 && c.cols == 4);
        }
    }

    void harder_planted_fleets_are_recovered() {
        // Six groups, mixed ranks (a rank-2 member spans only half of its group's subspace), noise: the
        // initial k-means alone does not always get these right; the alternation and its escapes must.
        for (const std::uint64_t seed : {1u, 2u, 3u, 4u}) {
            planted_fleet_options po;
            po.modules = {{"l0.q", 64, 48}, {"l0.v", 32, 48}, {"l1.q", 64, 48}, {"l1.v", 32, 48}};
            po.groups = 6;
            po.adapters_per_group = 5;
            po.adapter_ranks = {4, 2, 4, 3};
            po.noise = seed % 2 == 0 ? 0.05 : 0.0;
            po.seed = seed;
            auto fleet = make_planted_fleet(po);
            compress_options o;
            o.jd.rank = 4;
            o.jd.seed = seed;
            o.clusters = 6;
            o.feature_modules = 2; // few features: a weaker initial clustering
            const auto r = compress_fleet(*fleet.source, backend, o);
            QVERIFY2(same_partition(r.assignment, fleet.labels), qPrintable(QString("seed %1").arg(seed)));
            QVERIFY(r.mean_error < (po.noise > 0.0 ? 0.02 : 1e-6));
        }
    }

    void one_cluster_cannot_fit_several_groups() {
        // Sanity of the planted construction: one rank-R basis for K groups leaves large errors.
        planted_fleet_options po;
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.rank = po.subspace_rank;
        const auto r = compress_fleet(*fleet.source, backend, o);
        QCOMPARE(r.k, 1);
        QVERIFY(r.mean_error > 0.3);
        QCOMPARE(r.timing.passes, 1);
    }

    void mixed_ranks_and_missing_modules() {
        planted_fleet_options po;
        po.adapter_ranks = {2, 4, 6, 3}; // 6 > R: still rank R inside the group subspace
        po.missing_probability = 0.3;
        po.adapters_per_group = 5;
        po.seed = 7;
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.rank = po.subspace_rank;
        o.clusters = po.groups;
        const auto r = compress_fleet(*fleet.source, backend, o);
        QVERIFY(same_partition(r.assignment, fleet.labels));
        int missing = 0;
        for (std::size_t i = 0; i < r.errors.size(); ++i)
            for (std::size_t m = 0; m < r.modules.size(); ++m) {
                if (fleet.has[i][m]) {
                    QVERIFY(r.errors[i][m] < 1e-6);
                    QVERIFY(!r.cores[i][m].empty());
                } else {
                    ++missing;
                    QVERIFY(std::isnan(r.errors[i][m]));
                    QVERIFY(r.cores[i][m].empty());
                }
            }
        QVERIFY(missing > 0);
        for (const double e : r.adapter_error)
            QVERIFY(!std::isnan(e) && e < 1e-6);
    }

    void jd_diag_recovers_a_diagonal_planted_fleet() {
        planted_fleet_options po;
        po.diagonal_cores = true;
        po.seed = 11;
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.method = jd_method::diag;
        o.jd.rank = po.subspace_rank;
        o.clusters = po.groups;
        const auto r = compress_fleet(*fleet.source, backend, o);
        QVERIFY(r.method == jd_method::diag);
        QVERIFY(same_partition(r.assignment, fleet.labels));
        QVERIFY2(max_finite_error(r) < 1e-6, qPrintable(QString("max error %1").arg(max_finite_error(r))));
        for (const auto& row : r.cores)
            for (const auto& c : row)
                QVERIFY(c.rows == po.subspace_rank && c.cols == 1);
    }

    void automatic_k_finds_the_planted_count() {
        planted_fleet_options po;
        po.groups = 4;
        po.adapters_per_group = 3;
        po.subspace_rank = 3;
        po.seed = 5;
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.rank = 3;
        o.clusters = 0;
        o.target_error = 1e-4;
        const auto r = compress_fleet(*fleet.source, backend, o);
        QCOMPARE(r.k, 4);
        QVERIFY(r.target_met);
        QVERIFY(same_partition(r.assignment, fleet.labels));
        QVERIFY(r.mean_error < 1e-6);
        // Doubling 1, 2, 4 then bisection at 3.
        QCOMPARE(r.k_trials.size(), std::size_t(4));
        QCOMPARE(r.k_trials[0].first, 1);
        QCOMPARE(r.k_trials[1].first, 2);
        QCOMPARE(r.k_trials[2].first, 4);
        QCOMPARE(r.k_trials[3].first, 3);
        QVERIFY(r.k_trials[3].second > 1e-4);

        // A cap below the planted count: the cap's fit, flagged.
        o.max_clusters = 2;
        const auto capped = compress_fleet(*fleet.source, backend, o);
        QCOMPARE(capped.k, 2);
        QVERIFY(!capped.target_met);
        QCOMPARE(capped.k_trials.size(), std::size_t(2)); // 1 and 2: the cap's trial is the result
        // An easy target is met by one cluster.
        o.max_clusters = 64;
        o.target_error = 0.99;
        QCOMPARE(compress_fleet(*fleet.source, backend, o).k, 1);
    }

    void streaming_loads_one_module_at_a_time() {
        planted_fleet_options po;
        auto fleet = make_planted_fleet(po);
        CountingSource counting(*fleet.source);
        compress_options o;
        o.jd.rank = po.subspace_rank;
        o.clusters = po.groups;
        o.feature_modules = 2;
        o.prefetch_modules = false; // the strict contract; the prefetching one: test_compress_prefetch
        const auto r = compress_fleet(counting, backend, o);
        QVERIFY(!counting.overlapped);
        const int nm = static_cast<int>(po.modules.size());
        QCOMPARE(counting.loads, r.timing.passes * nm + 2); // + the two feature modules
        QVERIFY(r.timing.passes >= 1 && r.timing.passes <= o.max_cluster_iterations + 1);
        for (std::size_t m = 0; m < po.modules.size(); ++m)
            QVERIFY(fleet.source->load_count(m) >= static_cast<std::size_t>(r.timing.passes));
    }

    void progress_is_monotone_and_cancellation_throws() {
        planted_fleet_options po;
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.rank = po.subspace_rank;
        o.clusters = po.groups;
        std::vector<progress_info> seen;
        const auto r = compress_fleet(*fleet.source, backend, o, [&](const progress_info& p) {
            seen.push_back(p);
            return true;
        });
        QVERIFY(seen.size() > 4);
        for (std::size_t i = 0; i < seen.size(); ++i) {
            QVERIFY(seen[i].fraction >= 0.0 && seen[i].fraction <= 1.0);
            QVERIFY(!seen[i].stage.empty());
            if (i > 0) QVERIFY(seen[i].fraction >= seen[i - 1].fraction);
        }
        QCOMPARE(seen.back().fraction, 1.0);
        QVERIFY(!seen[1].module.empty());
        QVERIFY(r.timing.total_s >= 0.0);

        int calls = 0;
        QVERIFY_THROWS_EXCEPTION(
            cancelled_error,
            compress_fleet(*fleet.source, backend, o, [&](const progress_info&) { return ++calls < 5; }));
        QCOMPARE(calls, 5);
        // Cancelling before the first module loads nothing.
        CountingSource counting(*fleet.source);
        QVERIFY_THROWS_EXCEPTION(cancelled_error, compress_fleet(counting, backend, o,
                                                                 [](const progress_info&) { return false; }));
        QCOMPARE(counting.loads, 0);
    }

    void adding_an_adapter_picks_its_group() {
        planted_fleet_options po;
        po.seed = 4;
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.rank = po.subspace_rank;
        o.clusters = po.groups;
        const auto r = compress_fleet(*fleet.source, backend, o);
        QVERIFY(same_partition(r.assignment, fleet.labels));

        // A new adapter of group 2 (fresh cores), plus a module the bank does not have.
        InMemoryModuleSource fresh(1);
        random_stream g(99);
        for (std::size_t m = 0; m < po.modules.size(); ++m) {
            fresh.add_module(po.modules[m].name, po.modules[m].d_out, po.modules[m].d_in);
            fresh.set_factors(m, lorafleet::test::planted_adapter(fleet, m, 2, 0, g));
        }
        const auto extra = fresh.add_module("layers.9.o_proj", 8, 8);
        fresh.set_factors(extra, lorafleet::test::random_factors(0, 2, 8, 8, g));
        const auto added = add_adapter(r, fresh, 0, backend);
        std::size_t member_of_2 = 0;
        while (fleet.labels[member_of_2] != 2)
            ++member_of_2;
        QCOMPARE(added.cluster, r.assignment[member_of_2]);
        QVERIFY(added.mean_error < 1e-6);
        QCOMPARE(added.unmatched_modules.size(), std::size_t(1));
        QCOMPARE(added.cluster_mean_error.size(), std::size_t(3));
        for (std::size_t c = 0; c < 3; ++c)
            if (static_cast<int>(c) != added.cluster) QVERIFY(added.cluster_mean_error[c] > 0.1);

        // Projecting an existing member gives back its own cluster and cores.
        const auto again = add_adapter(r, *fleet.source, 5, backend);
        QCOMPARE(again.cluster, r.assignment[5]);
        for (std::size_t m = 0; m < po.modules.size(); ++m) {
            const matrix& a = again.cores[m];
            const matrix& b = r.cores[5][m];
            QCOMPARE(a.data.size(), b.data.size());
            double scale = 0.0;
            for (const float x : b.data)
                scale = std::max(scale, static_cast<double>(std::abs(x)));
            for (std::size_t k = 0; k < a.data.size(); ++k)
                QVERIFY(std::abs(a.data[k] - b.data[k]) <= 1e-5 * scale);
        }
    }

    void compression_is_deterministic() {
        planted_fleet_options po;
        po.noise = 0.05; // not exact, so every digit of the fit matters
        po.seed = 21;
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.rank = 3;
        o.clusters = 3;
        const auto a = compress_fleet(*fleet.source, backend, o);
        const auto b = compress_fleet(*fleet.source, backend, o);
        QVERIFY(a.assignment == b.assignment);
        for (std::size_t i = 0; i < a.cores.size(); ++i)
            for (std::size_t m = 0; m < a.cores[i].size(); ++m) {
                QVERIFY(a.cores[i][m].data == b.cores[i][m].data);
                QCOMPARE(a.errors[i][m], b.errors[i][m]);
            }
        QVERIFY(a.mean_error > 1e-4); // really inexact
    }

    void unit_normalization_balances_adapters() {
        // Six unrelated adapters, one 30x larger; one cluster of rank R cannot hold them all.
        planted_fleet_options po;
        po.groups = 6;
        po.adapters_per_group = 1;
        po.scales = {30.0, 1.0, 1.0, 1.0, 1.0, 1.0};
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.rank = po.subspace_rank;
        o.jd.norm = normalization::none;
        const auto none = compress_fleet(*fleet.source, backend, o);
        o.jd.norm = normalization::unit;
        const auto unit = compress_fleet(*fleet.source, backend, o);
        auto mean_others = [](const compression_result& r) {
            double s = 0.0;
            for (std::size_t i = 1; i < r.adapter_error.size(); ++i)
                s += r.adapter_error[i];
            return s / static_cast<double>(r.adapter_error.size() - 1);
        };
        QVERIFY(none.adapter_error[0] < 1e-3); // the big adapter owns the basis (900x the energy)
        QVERIFY(unit.adapter_error[0] > none.adapter_error[0]);
        QVERIFY(mean_others(unit) < mean_others(none));
    }

    void limits_and_bad_configurations() {
        planted_fleet_options po;
        po.groups = 2;
        po.adapters_per_group = 2;
        auto fleet = make_planted_fleet(po);
        compress_options o;
        o.jd.rank = 25; // > min(24, 40) of the v_proj modules
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, compress_fleet(*fleet.source, backend, o));
        o.jd.rank = 4;
        o.clusters = 10; // more clusters than adapters: capped
        const auto r = compress_fleet(*fleet.source, backend, o);
        QCOMPARE(r.k, 4);
        QVERIFY(r.mean_error < 1e-6);
        o.clusters = 2;
        o.max_cluster_iterations = 0; // k-means init, then the final pass only
        const auto r0 = compress_fleet(*fleet.source, backend, o);
        QCOMPARE(r0.timing.passes, 1);
        QCOMPARE(r0.cluster_iterations, 0);
        InMemoryModuleSource empty(0);
        QVERIFY_THROWS_EXCEPTION(usage_error, compress_fleet(empty, backend, o));
    }
};

QTEST_APPLESS_MAIN(TestCompressFleet)
#include "test_compress_fleet.moc"
