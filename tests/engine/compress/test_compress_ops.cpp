// The production compression backend (OpsBackend over HostLinalgOps: CpuBackend, on 1 and 3 worker
// threads) against the INDEPENDENT reference implementation (tests/support/jd_reference.hpp) on planted
// fleets: same subspaces, cores, objectives, norms, residuals and errors within fp32 tolerance, for
// every eigen strategy, both methods, both inits, warm starts, member subsets and bad input. Plus the
// ops primitives against plain products formed here. OpsBackend is also the CUDA backend's algorithm,
// so this proves that path's logic on machines without a GPU (tests/kernels covers the device ops).
#include "engine/backend/compress_backends.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/host_linalg_ops.hpp"
#include "engine/compress/ops_backend.hpp"
#include "tests/engine/compress/test_compress_ops_compare.hpp"
#include "tests/support/jd_reference.hpp"

#include <QtTest/QtTest>

using namespace lorafleet;
using namespace lorafleet::compress;
using namespace lorafleet::backend;
namespace oc = lorafleet::test::ops_compare;

namespace {

OpsBackend host_backend(int threads = 1) {
    return OpsBackend("host-ops", std::make_unique<HostLinalgOps>(threads));
}

// Worker counts the production backend is checked with: the serial path and an uneven static split.
constexpr int thread_counts[] = {1, 3};

bool failed_with(int threads) {
    if (!QTest::currentTestFailed()) return false;
    qWarning("(production backend on %d worker threads)", threads);
    return true;
}

constexpr double tol = 1e-5; // sum of sin^2 of the principal angles; aligned factors within sqrt(tol)

} // namespace

class TestCompressOps : public QObject {
    Q_OBJECT

private slots:
    void primitivesMatchPlainProducts_data() {
        QTest::addColumn<int>("threads");
        QTest::newRow("1 thread") << 1;
        QTest::newRow("3 threads") << 3;
    }
    void primitivesMatchPlainProducts() {
        QFETCH(int, threads);
        const auto batch = oc::planted_batch(24, 20, 2, 3, false, false, 5);
        HostLinalgOps ops(threads);
        const std::vector<std::size_t> members = {4, 1, 3};
        ops.select(batch, members);
        const auto& l = ops.layout();
        QCOMPARE(l.size(), std::size_t(3));
        QCOMPARE(l.total, batch.adapters[4].rank + batch.adapters[1].rank + batch.adapters[3].rank);
        random_stream g(3);
        const matrix x = gaussian_matrix(24, 5, g);
        // project: row block k is B_k^T X, formed from the PEFT row-major lora_B here.
        const matrix p = ops.project(ops_side::u, x);
        for (std::size_t k = 0; k < members.size(); ++k) {
            const auto& f = batch.adapters[members[k]];
            for (std::int64_t i = 0; i < f.rank; ++i)
                for (std::int64_t j = 0; j < 5; ++j) {
                    double s = 0.0;
                    for (std::int64_t o = 0; o < 24; ++o)
                        s += double(f.b[std::size_t(o * f.rank + i)]) * x(o, j);
                    QVERIFY(std::abs(p(l.offsets[k] + i, j) - s) < 1e-4 * (1.0 + std::abs(s)));
                }
        }
        // accumulate: sum_k A_k^T Z_k.
        const matrix z = gaussian_matrix(l.total, 2, g);
        const matrix acc = ops.accumulate(ops_side::v, z);
        for (std::int64_t c = 0; c < 20; ++c)
            for (std::int64_t j = 0; j < 2; ++j) {
                double s = 0.0;
                for (std::size_t k = 0; k < members.size(); ++k) {
                    const auto& f = batch.adapters[members[k]];
                    for (std::int64_t i = 0; i < f.rank; ++i)
                        s += double(f.a[std::size_t(i * 20 + c)]) * z(l.offsets[k] + i, j);
                }
                QVERIFY(std::abs(acc(c, j) - s) < 1e-4 * (1.0 + std::abs(s)));
            }
        // apply_blocks with identity blocks == T T^T Q; an empty block drops that member.
        std::vector<matrix> blocks;
        for (const auto r : l.ranks)
            blocks.push_back(matrix::identity(r));
        blocks[1] = matrix();
        const matrix q = gaussian_matrix(20, 3, g);
        const matrix mq = ops.apply_blocks(ops_side::v, blocks, q);
        matrix zz = ops.project(ops_side::v, q);
        for (std::int64_t i = 0; i < l.ranks[1]; ++i)
            for (std::int64_t j = 0; j < 3; ++j)
                zz(l.offsets[1] + i, j) = 0.0f;
        QVERIFY(oc::rel_diff(ops.accumulate(ops_side::v, zz), mq) < 1e-5);
        // top_small_gram: columns are sqrt(lambda) e_j of X X^T; top_large_gram spans the same space.
        std::vector<matrix> factors;
        for (const auto r : l.ranks)
            factors.push_back(gaussian_matrix(r, 2, g));
        const matrix ys = ops.top_small_gram(ops_side::u, factors, 3);
        const matrix yl = ops.top_large_gram(ops_side::u, factors, 3);
        QCOMPARE(ys.cols, std::int64_t(3));
        QVERIFY(oc::subspace_gap(ys, yl) < 1e-6);
        // block_core_norms: ||Xu_j^T dW_k Xv_j||^2 against the dense dW_k (row-major [24, 20], double).
        const matrix xu = gaussian_matrix(24, 5, g), xv = gaussian_matrix(20, 5, g);
        const std::vector<std::int64_t> boff = {0, 2, 4}, bw = {2, 2, 1};
        const dmatrix cn = ops.block_core_norms(xu, xv, boff, bw);
        QCOMPARE(cn.rows, std::int64_t(3));
        QCOMPARE(cn.cols, std::int64_t(3));
        for (std::size_t k = 0; k < members.size(); ++k) {
            const auto dw = test::dense_delta(batch, members[k]);
            for (std::size_t j = 0; j < boff.size(); ++j) {
                double want = 0.0;
                for (std::int64_t a = 0; a < bw[j]; ++a)
                    for (std::int64_t b = 0; b < bw[j]; ++b) {
                        double e = 0.0;
                        for (std::int64_t o = 0; o < 24; ++o)
                            for (std::int64_t i = 0; i < 20; ++i)
                                e += xu(o, boff[j] + a) * dw[std::size_t(o * 20 + i)] * xv(i, boff[j] + b);
                        want += e * e;
                    }
                const double got = cn(std::int64_t(k), std::int64_t(j));
                QVERIFY2(std::abs(got - want) <= 1e-4 * want,
                         oc::msg("block core norm", got, want, 1e-4 * want).c_str());
            }
        }
        // split/stack round trip.
        const matrix back = stack_rows(l, split_rows(l, p));
        QCOMPARE(back.data, p.data);
        const std::vector<std::size_t> bad = {batch.size()};
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, ops.select(batch, bad));
    }

    void jdFullMatchesReferenceForEveryStrategy_data() {
        QTest::addColumn<int>("strategy");
        QTest::addColumn<int>("init");
        QTest::newRow("small-gram hosvd") << int(eigen_strategy::exact_small_gram) << int(jd_init::hosvd);
        QTest::newRow("large-gram hosvd") << int(eigen_strategy::exact_large_gram) << int(jd_init::hosvd);
        QTest::newRow("subspace hosvd") << int(eigen_strategy::subspace) << int(jd_init::hosvd);
        QTest::newRow("automatic random") << int(eigen_strategy::automatic) << int(jd_init::random);
        QTest::newRow("subspace random") << int(eigen_strategy::subspace) << int(jd_init::random);
    }
    void jdFullMatchesReferenceForEveryStrategy() {
        QFETCH(int, strategy);
        QFETCH(int, init);
        const auto batch = oc::planted_batch(48, 40, 3, 4, false, true, 11);
        test::ReferenceBackend ref;
        jd_options o;
        o.rank = 6;
        o.eigen = eigen_strategy(strategy);
        o.init = jd_init(init);
        o.seed = 77;
        // Converge tightly: the default tolerances stop within ~1e-4 of the fixed point, and the two
        // backends would then be compared at slightly different iterates rather than at fp32 level.
        o.tol = 1e-7;
        o.objective_tol = 1e-13;
        o.max_sweeps = 300;
        const auto all = all_positions(batch);
        for (const int threads : thread_counts) {
            CpuBackend cpu(cpu_backend_options{threads});
            oc::expect_same_module_results(ref, cpu, batch, all, o, tol);
            if (failed_with(threads)) return;
        }
    }

    void jdDiagMatchesReference_data() {
        QTest::addColumn<bool>("diagonal");
        QTest::addColumn<bool>("unit");
        QTest::newRow("planted diagonal, unit") << true << true;
        QTest::newRow("planted full cores, none") << false << false;
    }
    void jdDiagMatchesReference() {
        QFETCH(bool, diagonal);
        QFETCH(bool, unit);
        const auto batch = oc::planted_batch(40, 36, 2, 5, diagonal, false, 23);
        test::ReferenceBackend ref;
        jd_options o;
        o.method = jd_method::diag;
        o.rank = 8;
        o.norm = unit ? normalization::unit : normalization::none;
        o.diag_max_sweeps = 40;
        const auto all = all_positions(batch);
        for (const int threads : thread_counts) {
            CpuBackend cpu(cpu_backend_options{threads});
            oc::expect_same_module_results(ref, cpu, batch, all, o, tol);
            if (failed_with(threads)) return;
        }
    }

    void memberSubsetsAndWarmStartsMatchReference() {
        const auto batch = oc::planted_batch(48, 40, 3, 4, false, false, 31);
        test::ReferenceBackend ref;
        for (const int threads : thread_counts) {
            CpuBackend cpu(cpu_backend_options{threads});
            jd_options o;
            o.rank = 4;
            const std::vector<std::size_t> group = {9, 0, 3, 6}; // one planted group, out of order
            oc::expect_same_module_results(ref, cpu, batch, group, o, tol);
            if (failed_with(threads)) return;
            // Warm start from a JD-Diag basis of another group (not orthonormal: orthonormalized first).
            jd_options d = o;
            d.method = jd_method::diag;
            const std::vector<std::size_t> other = {1, 4, 7, 10};
            const jd_fit start = ref.fit(batch, other, d);
            const jd_fit fr = ref.fit_jd_full(batch, group, o, &start.basis);
            const jd_fit fg = cpu.fit_jd_full(batch, group, o, &start.basis);
            oc::expect_same_fit(fr, fg, tol);
            if (failed_with(threads)) return;
            const jd_fit dr = ref.fit_jd_diag(batch, group, d, &start.basis);
            const jd_fit dg = cpu.fit_jd_diag(batch, group, d, &start.basis);
            oc::expect_same_fit(dr, dg, tol);
            if (failed_with(threads)) return;
        }
    }

    void parallelPathMatchesReference_data() {
        QTest::addColumn<int>("method");
        QTest::newRow("jd-full") << int(jd_method::full);
        QTest::newRow("jd-diag") << int(jd_method::diag);
    }
    void parallelPathMatchesReference() {
        // Large enough that HostLinalgOps' member loops run on the workers (the small batches above stay
        // below thread_pool::serial_flops and run inline): 48 adapters, d = 1024 / 768.
        QFETCH(int, method);
        const auto batch = oc::planted_batch(1024, 768, 4, 12, false, false, 57);
        jd_options o;
        o.method = jd_method(method);
        o.rank = 8;
        o.diag_max_sweeps = 20;
        std::int64_t total_rank = 0;
        for (const auto& f : batch.adapters)
            total_rank += f.rank;
        QVERIFY(2.0 * double(batch.d_in) * double(total_rank) * double(o.rank) > thread_pool::serial_flops);
        test::ReferenceBackend ref;
        CpuBackend cpu(cpu_backend_options{3});
        oc::expect_same_module_results(ref, cpu, batch, all_positions(batch), o, tol);
    }

    void exactPlantedFleetIsReconstructed() {
        // Noise-free group of rank 4: r = 4 reconstructs it; the production backend's errors are
        // formed in double, so they are ~0 (1e-9 relative), and agree with the dense brute force.
        test::planted_fleet_options po;
        po.modules = {{"m", 30, 26}};
        po.groups = 1;
        po.adapters_per_group = 6;
        po.subspace_rank = 4;
        auto fleet = test::make_planted_fleet(po);
        const auto batch = fleet.source->load(0);
        CpuBackend ops(cpu_backend_options{2});
        jd_options o;
        o.rank = 4;
        const auto all = all_positions(batch);
        const auto fit = ops.fit_jd_full(batch, all, o);
        const auto norms = ops.norms2(batch);
        const auto err = ops.errors(batch, fit.basis, all, fit.cores);
        for (std::size_t k = 0; k < all.size(); ++k) {
            QVERIFY2(err[k] <= 1e-9 * norms[k],
                     oc::msg("error of an exact fleet", err[k], 0.0, 1e-9 * norms[k]).c_str());
            const double dense = test::dense_error(batch, k, fit.basis.u, fit.cores[k], fit.basis.v);
            QVERIFY(std::abs(dense - err[k]) <= 1e-5 * norms[k]);
        }
        QVERIFY(oc::subspace_gap(fit.basis.u, fleet.group_u[0][0]) < 1e-6);
    }

    void fleetCompressionMatchesReference_data() {
        QTest::addColumn<int>("method");
        QTest::newRow("jd-full") << int(jd_method::full);
        QTest::newRow("jd-diag") << int(jd_method::diag);
    }
    void fleetCompressionMatchesReference() {
        // The whole driver (features, k-means, alternation with residuals, errors) over both backends.
        QFETCH(int, method);
        test::planted_fleet_options po;
        po.groups = 3;
        po.adapters_per_group = 5;
        po.subspace_rank = 3;
        po.adapter_ranks = {3, 5, 2};
        po.diagonal_cores = method == int(jd_method::diag);
        po.noise = 0.02;
        po.missing_probability = 0.1;
        po.seed = 42;
        auto fleet = test::make_planted_fleet(po);
        compress_options o;
        o.jd.method = jd_method(method);
        o.jd.rank = 3;
        o.clusters = 3;
        test::ReferenceBackend ref;
        CpuBackend cpu(cpu_backend_options{3});
        const auto rc = compress_fleet(*fleet.source, ref, o);
        const auto rg = compress_fleet(*fleet.source, cpu, o);
        QVERIFY(test::same_partition(rc.assignment, fleet.labels));
        QVERIFY(test::same_partition(rg.assignment, fleet.labels));
        QVERIFY2(std::abs(rc.mean_error - rg.mean_error) <= 1e-3,
                 oc::msg("mean relative error", rg.mean_error, rc.mean_error, 1e-3).c_str());
        QVERIFY(rg.mean_error < 0.01); // planted at 2% noise energy
        for (std::size_t a = 0; a < rc.adapter_error.size(); ++a)
            QVERIFY(std::abs(rc.adapter_error[a] - rg.adapter_error[a]) <= 1e-3);
    }

    void registryReportsWhyCudaIsUnavailable() {
        std::string reason;
        if (cuda_backend_usable(&reason)) QSKIP("a CUDA device is usable here (tests/kernels covers it)");
        QVERIFY(!reason.empty());
        try {
            (void)make_compress_backend("cuda");
            QFAIL("make_compress_backend(\"cuda\") succeeded without a usable device");
        } catch (const backend_unavailable& e) {
            QVERIFY2(std::string(e.what()).find(reason) != std::string::npos, e.what());
        }
        QCOMPARE(make_compress_backend("auto", 1)->name(), std::string("cpu"));
        QVERIFY_THROWS_EXCEPTION(usage_error, make_compress_backend("tpu"));
    }

    void badInputIsRejected() {
        const auto batch = oc::planted_batch(20, 16, 1, 3, false, false, 3);
        auto ops = host_backend();
        oc::expect_same_errors(ops, batch);
        CpuBackend cpu(cpu_backend_options{3});
        oc::expect_same_errors(cpu, batch);
    }
};

QTEST_APPLESS_MAIN(TestCompressOps)
#include "test_compress_ops.moc"
