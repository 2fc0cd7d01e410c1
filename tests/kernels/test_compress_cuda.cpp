// The CUDA compression backend on a real device (label gpu): CudaLinalgOps' primitives against
// HostLinalgOps, and the whole backend against the INDEPENDENT test::ReferenceBackend on planted fleets
// (same checks as tests/engine/compress/test_compress_ops.cpp), every eigen strategy, both methods, subsets,
// the registry's "cuda" / "auto" choice and the memory budget. The eigen paths are also checked against
// an fp64 truth (double-precision principal angles), and the fleet run for the same partition AND the
// same passes as the CPU, with and without the look-ahead upload. Without a usable device main() prints
// the probe's reason and exits 77, which CTest reports as skipped (SKIP_RETURN_CODE 77).
#include "engine/backend/compress_backends.hpp"
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/eigen_floor.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/host_linalg_ops.hpp"
#include "engine/compress/ops_backend.hpp"
#include "kernels/device_probe.hpp"
#include "tests/engine/compress/test_compress_ops_compare.hpp"
#include "tests/support/jd_reference.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <cstdio>

using namespace lorafleet;
using namespace lorafleet::compress;
using namespace lorafleet::backend;
namespace oc = lorafleet::test::ops_compare;

namespace {

constexpr double tol = 1e-5;

// sum of sin^2 of the principal angles in DOUBLE (bases orthonormalized by Gram-Schmidt applied twice):
// oc::subspace_gap works in fp32, whose r - ||Qa^T Qb||^2 cannot resolve much below 1e-7.
dmatrix orth_d(dmatrix q) {
    for (std::int64_t j = 0; j < q.cols; ++j) {
        for (int pass = 0; pass < 2; ++pass)
            for (std::int64_t p = 0; p < j; ++p) {
                double d = 0.0;
                for (std::int64_t i = 0; i < q.rows; ++i)
                    d += q(i, p) * q(i, j);
                for (std::int64_t i = 0; i < q.rows; ++i)
                    q(i, j) -= d * q(i, p);
            }
        const double n = std::sqrt(frobenius2(q.view().block_cols(j, 1)));
        for (std::int64_t i = 0; i < q.rows; ++i)
            q(i, j) = n > 0.0 ? q(i, j) / n : 0.0;
    }
    return q;
}
double gap_d(const matrix& a, const dmatrix& b) {
    const dmatrix qa = orth_d(to_double(a)), qb = orth_d(b);
    return std::max(0.0, static_cast<double>(a.cols) -
                             frobenius2(gemm(op::t, qa.view(), op::n, qb.view()).view()));
}

// The exact eigen paths in double from the fp32 factors (an independent truth for both ops):
// X = [T_k L_k] of the working set `members`, its top-k X E (small) and top-k eigenvectors of X X^T.
dmatrix truth_x(const module_batch& b, std::span<const std::size_t> members, ops_side s,
                const std::vector<matrix>& f) {
    const auto d = s == ops_side::u ? b.d_out : b.d_in;
    std::int64_t w = 0;
    for (const auto& x : f)
        w += x.cols;
    dmatrix x(d, w);
    std::int64_t off = 0;
    for (std::size_t k = 0; k < members.size(); ++k) {
        if (f[k].cols == 0) continue;
        const dmatrix t =
            s == ops_side::u ? to_double(transpose(b.b_t(members[k]))) : to_double(b.a_t(members[k]));
        gemm(op::n, t.view(), op::n, to_double(f[k]).view(), x.mut().block_cols(off, f[k].cols));
        off += f[k].cols;
    }
    return x;
}
// Past X's numerical rank both use the fixed directions of eigen_floor.hpp (a subset holding
// zero-scale adapters has a rank-deficient X: its last direction was arbitrary, different per backend).
dmatrix truth_small(const dmatrix& x, std::int64_t k) {
    const auto e = top_eigenvectors(gemm(op::t, x.view(), op::n, x.view()), k);
    dmatrix y = gemm(op::n, x.view(), op::n, e.vectors.view());
    const auto keep = eigen_rank(e.values);
    if (keep < k) complete_null_columns(y, keep, std::sqrt(eigen_floor_ratio * e.values[0]));
    return y;
}
dmatrix truth_large(const dmatrix& x, std::int64_t k) {
    auto e = top_eigenvectors(gemm(op::n, x.view(), op::t, x.view()), k);
    complete_null_columns(e.vectors, eigen_rank(e.values), 1.0);
    return e.vectors;
}

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
        const matrix ls = host.top_large_gram(side, f, 4), ld = dev.top_large_gram(side, f, 4);
        QVERIFY(oc::subspace_gap(ls, ld) < 1e-6);
        // Both against the truth in double, with a double-precision measure: the fp64 eigen paths leave
        // only X's fp32 rounding (tests/kernels_host/test_linalg_precision.cpp: ~1e-13 on these inputs;
        // the fp32 Gram + fp32 eigensolver paths were 1e-8 .. 1e-6 away).
        const dmatrix tx = truth_x(batch, members, side, f);
        const dmatrix ts = truth_small(tx, 4), tl = truth_large(tx, 4);
        const double gs_host = gap_d(ys, ts), gs_dev = gap_d(yd, ts), gl_host = gap_d(ls, tl),
                     gl_dev = gap_d(ld, tl);
        QVERIFY2(gs_host < 1e-9 && gs_dev < 1e-9 && gl_host < 1e-9 && gl_dev < 1e-9,
                 qPrintable(QString("gap to the fp64 truth: small host %1 device %2, large host %3 device %4")
                                .arg(gs_host)
                                .arg(gs_dev)
                                .arg(gl_host)
                                .arg(gl_dev)));
        // X E's columns have norms sqrt(lambda_j) on both (eigenvalues to fp32 precision, not fp32^1/2).
        const dmatrix tg = gemm(op::t, ts.view(), op::n, ts.view());
        QVERIFY(oc::rel_diff(to_float(tg.view()), gemm(op::t, yd, op::n, yd)) < 1e-5);
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
        auto po = test::three_shape_fleet_options(23);
        po.missing_probability = 0.2;
        auto fleet = test::make_planted_fleet(po);
        compress_options o;
        o.jd.rank = po.subspace_rank;
        o.clusters = po.groups;
        o.prefetch_modules = true;
        CpuBackend cpu(cpu_backend_options{2});
        const auto want = compress_fleet(*fleet.source, cpu, o);
        QVERIFY(test::same_partition(want.assignment, fleet.labels));
        {
            // The device without the look-ahead first: if only the staged run below differs from the CPU,
            // the staging (stage() / select()'s takeover) is at fault, not the device's numerics.
            compress_options plain = o;
            plain.prefetch_modules = false;
            OpsBackend unstaged("cuda", std::make_unique<CudaLinalgOps>(std::size_t(256) << 20));
            const auto first = compress_fleet(*fleet.source, unstaged, plain);
            QVERIFY2(test::same_partition(first.assignment, want.assignment),
                     "the device's partition differs from the CPU's even without the look-ahead");
            QCOMPARE(first.timing.passes, want.timing.passes);
        }
        OpsBackend cuda("cuda", std::make_unique<CudaLinalgOps>(std::size_t(256) << 20));
        const auto got = compress_fleet(*fleet.source, cuda, o);
        QVERIFY(test::same_partition(got.assignment, want.assignment));
        QVERIFY(test::same_partition(got.assignment, fleet.labels));
        // The same alternation, not only the same end point: as many passes, the same best pass.
        QCOMPARE(got.timing.passes, want.timing.passes);
        QCOMPARE(got.cluster_iterations, want.cluster_iterations);
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
        const auto rc = ops.resident_counters();
        qInfo(
            "staged modules taken over by select(): %zu; resident cache: %zu hits, %zu misses, %zu evictions",
            ops.stage_hits(), rc.hits, rc.misses, rc.evictions);
        // Two passes at least: the first pass uploads (all but the first module staged), every later one
        // finds each module still resident (the fleet fits the 256 MB budget, so nothing is evicted).
        QVERIFY(ops.stage_hits() + 1 >= po.modules.size());
        QVERIFY(rc.hits >= po.modules.size());
        QCOMPARE(rc.evictions, std::size_t(0));
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
