// The CUDA compression backend on a real device (label gpu): CudaLinalgOps' primitives against
// HostLinalgOps, and the whole backend against the INDEPENDENT test::ReferenceBackend on planted fleets
// (same checks as tests/engine/compress/test_compress_ops.cpp), every eigen strategy, both methods, subsets,
// the registry's "cuda" / "auto" choice and the memory budget. Without a usable device main() prints
// the probe's reason and exits 77, which CTest reports as skipped (SKIP_RETURN_CODE 77).
#include "engine/backend/compress_backends.hpp"
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/host_linalg_ops.hpp"
#include "engine/compress/ops_backend.hpp"
#include "kernels/device_probe.hpp"
#include "tests/engine/compress/test_compress_ops_compare.hpp"
#include "tests/support/jd_reference.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <cstdio>

using namespace lorafleet;
using namespace lorafleet::compress;
using namespace lorafleet::backend;
namespace oc = lorafleet::test::ops_compare;

namespace {

constexpr double tol = 1e-5;

// Runs the same primitive on both ops over the same working set and compares (relative Frobenius).
void expect_same_primitives(LinalgOps& host, LinalgOps& dev, const module_batch& batch,
                            std::span<const std::size_t> members) {
    host.select(batch, members);
    dev.select(batch, members);
    QCOMPARE(dev.layout().offsets, host.layout().offsets);
    random_stream g(9);
    for (const auto side : {ops_side::u, ops_side::v}) {
        const auto d = host.layout().dim(side), R = host.layout().total;
        const matrix x = gaussian_matrix(d, 7, g);
        QVERIFY(oc::rel_diff(host.project(side, x), dev.project(side, x)) < 1e-5);
        const matrix z = gaussian_matrix(R, 5, g);
        QVERIFY(oc::rel_diff(host.accumulate(side, z), dev.accumulate(side, z)) < 1e-5);
        std::vector<matrix> c, f;
        for (std::size_t k = 0; k < host.layout().size(); ++k) {
            const auto r = host.layout().ranks[k];
            const matrix l = gaussian_matrix(r, r, g);
            c.push_back(k % 3 == 1 ? matrix() : gemm(op::n, l, op::t, l));
            f.push_back(k % 4 == 2 ? matrix(r, 0) : gaussian_matrix(r, std::min<std::int64_t>(r, 3), g));
        }
        QVERIFY(oc::rel_diff(host.apply_blocks(side, c, x), dev.apply_blocks(side, c, x)) < 1e-5);
        const auto gh = host.block_grams(side), gd = dev.block_grams(side);
        QCOMPARE(gd.size(), gh.size());
        for (std::size_t k = 0; k < gh.size(); ++k)
            QVERIFY(oc::rel_diff(gh[k], gd[k]) < 1e-5);
        const matrix ys = host.top_small_gram(side, f, 4), yd = dev.top_small_gram(side, f, 4);
        QVERIFY(oc::subspace_gap(ys, yd) < 1e-6);
        QVERIFY(oc::rel_diff(gemm(op::t, ys, op::n, ys), gemm(op::t, yd, op::n, yd)) < 1e-4); // eigenvalues
        QVERIFY(oc::subspace_gap(host.top_large_gram(side, f, 4), dev.top_large_gram(side, f, 4)) < 1e-6);
        {
            const matrix xu = gaussian_matrix(host.layout().d_out, 9, g),
                         xv = gaussian_matrix(host.layout().d_in, 9, g);
            const std::vector<std::int64_t> off = {0, 4, 5}, w = {4, 1, 4};
            const dmatrix ch = host.block_core_norms(xu, xv, off, w),
                          cd = dev.block_core_norms(xu, xv, off, w);
            QCOMPARE(cd.rows, ch.rows);
            QCOMPARE(cd.cols, ch.cols);
            for (std::size_t i = 0; i < ch.data.size(); ++i)
                QVERIFY(std::abs(ch.data[i] - cd.data[i]) <= 1e-4 * std::max(ch.data[i], 1e-12));
        }
        const matrix a = gaussian_matrix(d, 6, g);
        const auto [qh, rh] = host.qr(a);
        const auto [qd, rd] = dev.qr(a);
        QVERIFY(oc::rel_diff(qh, qd) < 1e-4); // same Householder sign convention
        QVERIFY(oc::rel_diff(rh, rd) < 1e-4);
    }
}

} // namespace

class TestCompressCuda : public QObject {
    Q_OBJECT

private slots:
    void registryPicksTheDevice() {
        QCOMPARE(make_compress_backend("cuda")->name(), std::string("cuda"));
        QCOMPARE(make_compress_backend("auto", 1, 256)->name(), std::string("cuda"));
        QCOMPARE(make_compress_backend("cpu", 1)->name(), std::string("cpu"));
    }

    void primitivesMatchHost() {
        const auto batch = oc::planted_batch(96, 80, 3, 5, false, true, 4);
        HostLinalgOps host;
        CudaLinalgOps dev(64u << 20);
        const auto all = all_positions(batch);
        expect_same_primitives(host, dev, batch, all);
        if (QTest::currentTestFailed()) return;
        const std::vector<std::size_t> subset = {13, 2, 7, 8};
        expect_same_primitives(host, dev, batch, subset);
    }

    void backendMatchesCpu_data() {
        QTest::addColumn<int>("method");
        QTest::addColumn<int>("strategy");
        QTest::newRow("full small-gram") << int(jd_method::full) << int(eigen_strategy::exact_small_gram);
        QTest::newRow("full large-gram") << int(jd_method::full) << int(eigen_strategy::exact_large_gram);
        QTest::newRow("full subspace") << int(jd_method::full) << int(eigen_strategy::subspace);
        QTest::newRow("diag automatic") << int(jd_method::diag) << int(eigen_strategy::automatic);
    }
    void backendMatchesCpu() {
        QFETCH(int, method);
        QFETCH(int, strategy);
        const auto batch = oc::planted_batch(96, 80, 3, 5, method == int(jd_method::diag), true, 17);
        test::ReferenceBackend cpu;
        auto cuda = make_cuda_backend();
        jd_options o;
        o.method = jd_method(method);
        o.eigen = eigen_strategy(strategy);
        o.rank = 6;
        o.tol = 1e-7;
        o.objective_tol = 1e-13;
        o.max_sweeps = 300;
        const auto all = all_positions(batch);
        oc::expect_same_module_results(cpu, *cuda, batch, all, o, tol);
        if (QTest::currentTestFailed()) return;
        const std::vector<std::size_t> group = {0, 3, 6, 9, 12};
        oc::expect_same_module_results(cpu, *cuda, batch, group, o, tol);
    }

    // The whole driver with the look-ahead: each next module is uploaded on the second stream by the
    // prefetch thread, the compute stream takes it over, and the results equal the CPU backend's.
    void stagedFleetCompressionMatchesCpu() {
        test::planted_fleet_options po;
        po.modules = {{"layers.0.q_proj", 96, 80},
                      {"layers.0.v_proj", 48, 80},
                      {"layers.1.q_proj", 96, 80},
                      {"layers.1.v_proj", 48, 80},
                      {"layers.2.q_proj", 64, 80}};
        po.adapter_ranks = {4, 6, 5};
        po.noise = 0.05;
        po.missing_probability = 0.2;
        po.seed = 23;
        auto fleet = test::make_planted_fleet(po);
        compress_options o;
        o.jd.rank = po.subspace_rank;
        o.clusters = po.groups;
        o.prefetch_modules = true;
        CpuBackend cpu(cpu_backend_options{2});
        const auto want = compress_fleet(*fleet.source, cpu, o);
        OpsBackend cuda("cuda", std::make_unique<CudaLinalgOps>(std::size_t(256) << 20));
        const auto got = compress_fleet(*fleet.source, cuda, o);
        QVERIFY(test::same_partition(got.assignment, want.assignment));
        QVERIFY(test::same_partition(got.assignment, fleet.labels));
        for (std::size_t a = 0; a < want.errors.size(); ++a)
            for (std::size_t m = 0; m < want.errors[a].size(); ++m) {
                if (std::isnan(want.errors[a][m])) {
                    QVERIFY(std::isnan(got.errors[a][m]));
                    continue;
                }
                QVERIFY2(std::abs(got.errors[a][m] - want.errors[a][m]) < 1e-4,
                         qPrintable(QString("adapter %1 module %2: %3 vs %4")
                                        .arg(a)
                                        .arg(m)
                                        .arg(got.errors[a][m])
                                        .arg(want.errors[a][m])));
            }
        const auto& ops = dynamic_cast<CudaLinalgOps&>(cuda.ops());
        qInfo("staged modules taken over by select(): %zu", ops.stage_hits());
        QVERIFY(ops.stage_hits() >= po.modules.size()); // two passes at least, all but the first staged
    }

    void badInputIsRejected() {
        const auto batch = oc::planted_batch(20, 16, 1, 3, false, false, 3);
        auto cuda = make_cuda_backend();
        oc::expect_same_errors(*cuda, batch);
    }

    void budgetIsEnforcedWithAClearError() {
        const auto batch = oc::planted_batch(1024, 1024, 4, 20, false, false, 8); // ~2.4 MB of factors
        auto cuda = make_cuda_backend(cuda_backend_options{1, 0});                // 1 MiB budget
        jd_options o;
        o.rank = 4;
        bool thrown = false;
        try {
            (void)cuda->fit_jd_full(batch, all_positions(batch), o);
        } catch (const backend_unavailable& e) {
            thrown = true;
            QVERIFY2(std::string(e.what()).find("budget") != std::string::npos, e.what());
        }
        QVERIFY(thrown);
    }
};

int main(int argc, char** argv) {
    const auto probe = kernels::probe_cuda_devices();
    if (!probe.available) {
        std::printf("SKIP: no usable CUDA device: %s\n", probe.reason.c_str());
        return 77; // CTest: SKIP_RETURN_CODE
    }
    TestCompressCuda t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_compress_cuda.moc"
