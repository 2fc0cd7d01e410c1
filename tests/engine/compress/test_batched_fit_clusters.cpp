// CompressBackend::fit_clusters (all clusters of a module in one call) against the one-by-one loop
// [fit(batch, clusters[c], options, warm[c]) for c]: BIT-FOR-BIT on the host backend (OpsBackend over
// HostLinalgOps) for 1 and 3 worker threads, for the base class' default implementation and for
// OpsBackend's lock-step one, on planted fleets with unequal cluster sizes (a cluster of one adapter
// included), JD-Full and JD-Diag, without and with warm starts (where some clusters converge after one
// sweep while others continue), every eigen strategy; plus its argument checks.
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/host_linalg_ops.hpp"
#include "engine/compress/ops_backend.hpp"
#include "engine/compress/parallel.hpp"
#include "engine/core/error.hpp"
#include "tests/engine/compress/test_compress_ops_compare.hpp"
#include "tests/support/same_bits.hpp"

#include <QtTest/QtTest>

#include <algorithm>
#include <cstring>

using namespace lorafleet;
using namespace lorafleet::compress;
namespace oc = lorafleet::test::ops_compare;

namespace {

using test::same_bits;

// Everything fit() reports, compared bit for bit (QVERIFY2 names the first field that differs).
void expect_identical(const jd_fit& want, const jd_fit& got, std::size_t cluster) {
    const std::string c = "cluster " + std::to_string(cluster) + ": ";
    QVERIFY2(got.members == want.members, (c + "members").c_str());
    QVERIFY2(got.basis.method == want.basis.method, (c + "basis method").c_str());
    QVERIFY2(got.sweeps == want.sweeps,
             (c + "sweeps " + std::to_string(got.sweeps) + " vs " + std::to_string(want.sweeps)).c_str());
    QVERIFY2(got.converged == want.converged, (c + "converged").c_str());
    QVERIFY2(got.eigen_used == want.eigen_used, (c + "eigen_used").c_str());
    QVERIFY2(std::memcmp(&got.weighted_energy, &want.weighted_energy, sizeof(double)) == 0,
             (c + "weighted energy").c_str());
    QVERIFY2(same_bits(got.objective, want.objective), (c + "objective").c_str());
    QVERIFY2(same_bits(got.step_objective, want.step_objective), (c + "step objective").c_str());
    QVERIFY2(same_bits(got.basis.u, want.basis.u), (c + "U").c_str());
    QVERIFY2(same_bits(got.basis.v, want.basis.v), (c + "V").c_str());
    QVERIFY2(got.cores.size() == want.cores.size(), (c + "core count").c_str());
    for (std::size_t k = 0; k < want.cores.size(); ++k)
        QVERIFY2(same_bits(got.cores[k], want.cores[k]), (c + "core " + std::to_string(k)).c_str());
}

void expect_identical(const std::vector<jd_fit>& want, const std::vector<jd_fit>& got) {
    QCOMPARE(got.size(), want.size());
    for (std::size_t c = 0; c < want.size(); ++c) {
        expect_identical(want[c], got[c], c);
        if (QTest::currentTestFailed()) return;
    }
}

// 3 planted groups of 6 (adapter i in group i % 3), split into clusters of unequal sizes: a group plus
// two strays, the rest of that group, one lone adapter, and the last group's other five.
std::vector<std::vector<std::size_t>> uneven_clusters() {
    return {{0, 3, 6, 9, 12, 15, 1, 4}, {7, 10, 13, 16}, {2}, {5, 8, 11, 14, 17}};
}

std::vector<jd_fit> loop(CompressBackend& b, const module_batch& batch,
                         const std::vector<std::vector<std::size_t>>& clusters, const jd_options& o,
                         const std::vector<const jd_basis*>& warm) {
    std::vector<jd_fit> out;
    for (std::size_t c = 0; c < clusters.size(); ++c)
        out.push_back(b.fit(batch, clusters[c], o, warm.empty() ? nullptr : warm[c]));
    return out;
}

jd_options options_for(int method, int strategy) {
    jd_options o;
    o.method = jd_method(method);
    o.rank = 4;
    o.eigen = eigen_strategy(strategy);
    o.diag_max_sweeps = 25;
    return o;
}

} // namespace

class TestBatchedFitClusters : public QObject {
    Q_OBJECT

private slots:
    void equalsTheLoop_data() {
        QTest::addColumn<int>("method");
        QTest::addColumn<int>("strategy");
        QTest::addColumn<int>("threads");
        for (const int threads : {1, 3}) {
            const auto t = std::to_string(threads) + " threads";
            QTest::newRow(("jd-full automatic, " + t).c_str())
                << int(jd_method::full) << int(eigen_strategy::automatic) << threads;
            QTest::newRow(("jd-full small gram, " + t).c_str())
                << int(jd_method::full) << int(eigen_strategy::exact_small_gram) << threads;
            QTest::newRow(("jd-full large gram, " + t).c_str())
                << int(jd_method::full) << int(eigen_strategy::exact_large_gram) << threads;
            QTest::newRow(("jd-full subspace, " + t).c_str())
                << int(jd_method::full) << int(eigen_strategy::subspace) << threads;
            QTest::newRow(("jd-diag automatic, " + t).c_str())
                << int(jd_method::diag) << int(eigen_strategy::automatic) << threads;
        }
    }
    // Cold start (no warm bases), then a second pass warm-started from the first pass's bases with two
    // clusters changed: the unchanged ones converge at once while the changed ones keep sweeping.
    void equalsTheLoop() {
        QFETCH(int, method);
        QFETCH(int, strategy);
        QFETCH(int, threads);
        const auto batch = oc::planted_batch(48, 40, 3, 6, false, false, 71);
        QCOMPARE(batch.size(), std::size_t(18));
        const jd_options o = options_for(method, strategy);
        const auto clusters = uneven_clusters();
        CpuBackend looped(cpu_backend_options{threads}), batched(cpu_backend_options{threads});

        const auto want = loop(looped, batch, clusters, o, {});
        const auto got = batched.fit_clusters(batch, clusters, o, {});
        expect_identical(want, got);
        if (QTest::currentTestFailed()) return;
        const auto base = batched.CompressBackend::fit_clusters(batch, clusters, o, {});
        expect_identical(want, base);
        if (QTest::currentTestFailed()) return;

        // Pass 2: clusters 0 and 1 exchange the strays (1, 4) for nothing / gain them; 2 and 3 unchanged.
        std::vector<std::vector<std::size_t>> next = {
            {0, 3, 6, 9, 12, 15}, {7, 10, 13, 16, 1, 4}, {2}, {5, 8, 11, 14, 17}};
        std::vector<const jd_basis*> warm;
        for (const auto& f : want)
            warm.push_back(&f.basis);
        const auto want2 = loop(looped, batch, next, o, warm);
        const auto got2 = batched.fit_clusters(batch, next, o, warm);
        expect_identical(want2, got2);
        if (QTest::currentTestFailed()) return;
        const auto base2 = batched.CompressBackend::fit_clusters(batch, next, o, warm);
        expect_identical(want2, base2);
        if (QTest::currentTestFailed()) return;
        // The case is what it claims: clusters stop after different numbers of sweeps.
        int lo = want2.front().sweeps, hi = lo;
        for (const auto& f : want2) {
            lo = std::min(lo, f.sweeps);
            hi = std::max(hi, f.sweeps);
        }
        QVERIFY2(lo < hi, "every cluster ran the same number of sweeps: the early-stop case is not covered");
    }

    // A partly warm pass (some warm entries null, one empty basis) and the results' independence of the
    // worker count on the host backend.
    void partlyWarmAndThreadCountIndependent() {
        const auto batch = oc::planted_batch(48, 40, 3, 6, false, false, 72);
        jd_options o = options_for(int(jd_method::full), int(eigen_strategy::automatic));
        const auto clusters = uneven_clusters();
        CpuBackend one(cpu_backend_options{1});
        const auto first = one.fit_clusters(batch, clusters, o, {});
        const jd_basis empty;
        const std::vector<const jd_basis*> warm = {&first[0].basis, nullptr, &empty, &first[3].basis};
        const auto want = loop(one, batch, clusters, o, warm);
        expect_identical(want, one.fit_clusters(batch, clusters, o, warm));
        if (QTest::currentTestFailed()) return;
        CpuBackend three(cpu_backend_options{3});
        expect_identical(want, three.fit_clusters(batch, clusters, o, warm));
    }

    void parallelGroupsMatchTheOneThreadLoop_data() {
        QTest::addColumn<int>("method");
        QTest::newRow("jd-full") << int(jd_method::full);
        QTest::newRow("jd-diag") << int(jd_method::diag);
    }
    // Large enough that the grouped calls run on the workers (one group per task; the small batches above
    // stay below thread_pool::serial_flops and run inline): 48 adapters, d = 1024 / 768, four planted
    // groups split into five clusters of unequal sizes. fit_clusters on 3 threads must equal the loop on a
    // 1-thread backend bit for bit (each group's products are single-threaded), cold and warm.
    void parallelGroupsMatchTheOneThreadLoop() {
        QFETCH(int, method);
        const auto batch = oc::planted_batch(1024, 768, 4, 12, false, false, 57);
        jd_options o;
        o.method = jd_method(method);
        o.rank = 8;
        o.diag_max_sweeps = 15;
        std::vector<std::vector<std::size_t>> clusters(5);
        for (std::size_t i = 0; i < batch.size(); ++i)
            clusters[i % 4 == 3 && i > 30 ? 4 : i % 4].push_back(i); // group 3 split 5 / 7
        std::int64_t rank_sum = 0;
        for (const auto p : clusters[0])
            rank_sum += batch.adapters[p].rank;
        QVERIFY(2.0 * double(batch.d_out) * double(rank_sum) * double(o.rank) * double(clusters.size()) >
                thread_pool::serial_flops);
        CpuBackend one(cpu_backend_options{1}), three(cpu_backend_options{3});
        const auto want = loop(one, batch, clusters, o, {});
        expect_identical(want, three.fit_clusters(batch, clusters, o, {}));
        if (QTest::currentTestFailed()) return;
        std::vector<const jd_basis*> warm;
        for (const auto& f : want)
            warm.push_back(&f.basis);
        std::swap(clusters[0], clusters[1]); // warm starts from another cluster's basis: more sweeps
        const auto want2 = loop(one, batch, clusters, o, warm);
        expect_identical(want2, three.fit_clusters(batch, clusters, o, warm));
    }

    void noClustersGiveNoFits() {
        const auto batch = oc::planted_batch(48, 40, 3, 2, false, false, 73);
        CpuBackend cpu(cpu_backend_options{1});
        QVERIFY(cpu.fit_clusters(batch, {}, jd_options{}, {}).empty());
    }

    void badInputIsRejected() {
        const auto batch = oc::planted_batch(48, 40, 3, 2, false, false, 74);
        CpuBackend cpu(cpu_backend_options{1});
        jd_options o;
        o.rank = 4;
        const std::vector<std::vector<std::size_t>> clusters = {{0, 1}, {2, 3}};
        const jd_fit f = cpu.fit(batch, clusters[0], o);
        const std::vector<const jd_basis*> one_warm = {&f.basis};
        QVERIFY_THROWS_EXCEPTION(usage_error, cpu.fit_clusters(batch, clusters, o, one_warm));
        const std::vector<std::vector<std::size_t>> with_empty = {{0, 1}, {}};
        QVERIFY_THROWS_EXCEPTION(usage_error, cpu.fit_clusters(batch, with_empty, o, {}));
        const std::vector<std::vector<std::size_t>> outside = {{0, 1}, {2, 99}};
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, cpu.fit_clusters(batch, outside, o, {}));
        jd_options too_big = o;
        too_big.rank = 41;
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, cpu.fit_clusters(batch, clusters, too_big, {}));
        jd_basis wrong = f.basis;
        wrong.u = matrix(47, 4);
        const std::vector<const jd_basis*> bad_warm = {&f.basis, &wrong};
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, cpu.fit_clusters(batch, clusters, o, bad_warm));
    }
};

QTEST_GUILESS_MAIN(TestBatchedFitClusters)
#include "test_batched_fit_clusters.moc"
