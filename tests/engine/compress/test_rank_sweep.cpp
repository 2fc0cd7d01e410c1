// Module sampling, the module-subset source and the error-vs-rank sweep on planted fleets: K groups with
// rank-R subspaces compressed at K clusters reconstruct exactly from rank R on (error ~ 0) and not below,
// and the error does not grow with the rank. Also the sample's determinism and bounds, bad subsets,
// the rank series and cancellation.
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/module_sample.hpp"
#include "engine/compress/rank_sweep.hpp"
#include "engine/core/error.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <set>

using namespace lorafleet;
using namespace lorafleet::compress;

class TestRankSweep : public QObject {
    Q_OBJECT
private slots:
    void sampleIsDeterministicDistinctAndSorted() {
        const auto a = sample_modules(100, 7, 42);
        QCOMPARE(a, sample_modules(100, 7, 42));
        QCOMPARE(int(a.size()), 7);
        QVERIFY(std::is_sorted(a.begin(), a.end()));
        QCOMPARE(int(std::set<std::size_t>(a.begin(), a.end()).size()), 7);
        QVERIFY(a.back() < 100);
        QVERIFY(a != sample_modules(100, 7, 43)); // another seed, another sample (fixed seeds: not flaky)
        QCOMPARE(sample_modules(5, 9, 1), (std::vector<std::size_t>{0, 1, 2, 3, 4}));
        // Every module is reachable: over many seeds each index of 10 shows up.
        std::set<std::size_t> seen;
        for (std::uint64_t s = 0; s < 50; ++s)
            for (auto m : sample_modules(10, 2, s))
                seen.insert(m);
        QCOMPARE(int(seen.size()), 10);
    }

    void subsetForwardsTheChosenModules() {
        test::planted_fleet_options po;
        auto fleet = test::make_planted_fleet(po);
        ModuleSubsetSource subset(*fleet.source, {1, 3});
        QCOMPARE(subset.module_count(), std::size_t(2));
        QCOMPARE(subset.adapter_count(), fleet.source->adapter_count());
        QCOMPARE(subset.module(0).name, fleet.source->module(1).name);
        QCOMPARE(subset.module(1).name, fleet.source->module(3).name);
        QCOMPARE(subset.load(1).name, fleet.source->module(3).name);
        QCOMPARE(subset.base_module(1), std::size_t(3));
        QCOMPARE(max_rank_of(subset), std::int64_t(24)); // v_proj: 24 x 40
        QVERIFY_THROWS_EXCEPTION(validation_error, ModuleSubsetSource(*fleet.source, {0, 4}));
        QVERIFY_THROWS_EXCEPTION(validation_error, ModuleSubsetSource(*fleet.source, {2, 2}));
        QVERIFY_THROWS_EXCEPTION(usage_error, ModuleSubsetSource(*fleet.source, {}));
    }

    void rankSeries() {
        QCOMPARE(sweep_ranks(16), (std::vector<std::int64_t>{1, 2, 4, 8, 16}));
        QCOMPARE(sweep_ranks(12, 6), (std::vector<std::int64_t>{1, 2, 4, 6, 8, 12}));
        QCOMPARE(sweep_ranks(1), (std::vector<std::int64_t>{1}));
        QCOMPARE(sweep_ranks(4, 9), (std::vector<std::int64_t>{1, 2, 4}));
        QVERIFY(sweep_ranks(0).empty());
    }

    void errorVanishesAtThePlantedRank() {
        test::planted_fleet_options po;
        po.groups = 2;
        po.adapters_per_group = 5;
        po.subspace_rank = 3;
        auto fleet = test::make_planted_fleet(po);
        ModuleSubsetSource sample(*fleet.source, sample_modules(fleet.source->module_count(), 2, 7));
        CpuBackend backend(cpu_backend_options{1});
        compress_options options;
        options.clusters = 2;
        std::vector<double> fractions;
        const auto points = rank_sweep(sample, backend, options, {1, 2, 3, 5}, [&](const progress_info& p) {
            fractions.push_back(p.fraction);
            return true;
        });
        QCOMPARE(int(points.size()), 4);
        for (std::size_t i = 0; i < points.size(); ++i)
            qInfo("rank %lld: mean %.3g max %.3g", (long long)points[i].rank, points[i].mean_error,
                  points[i].max_error);
        QCOMPARE(points[2].rank, std::int64_t(3));
        QVERIFY(points[0].mean_error > 1e-2);
        QVERIFY(points[1].mean_error > 1e-3);
        QVERIFY(points[2].mean_error < 1e-6);
        QVERIFY(points[3].mean_error < 1e-6);
        QVERIFY(points[2].max_error < 1e-5);
        QVERIFY(points[0].mean_error >= points[1].mean_error);
        QVERIFY(points[1].max_error >= points[1].mean_error);
        QVERIFY(std::is_sorted(fractions.begin(), fractions.end()));
        QCOMPARE(fractions.back(), 1.0);
    }

    void cancelStopsTheSweep() {
        test::planted_fleet_options po;
        auto fleet = test::make_planted_fleet(po);
        CpuBackend backend(cpu_backend_options{1});
        compress_options options;
        options.clusters = 3;
        int calls = 0;
        QVERIFY_THROWS_EXCEPTION(cancelled_error,
                                 rank_sweep(*fleet.source, backend, options, {1, 2, 4},
                                            [&](const progress_info&) { return ++calls < 3; }));
        QCOMPARE(calls, 3);
        QVERIFY_THROWS_EXCEPTION(usage_error, rank_sweep(*fleet.source, backend, options, {}));
    }
};

QTEST_MAIN(TestRankSweep)
#include "test_rank_sweep.moc"
