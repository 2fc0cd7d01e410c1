// CudaLinalgOps' grouped operations (all clusters of a module at once, cuda_linalg_ops_batched.cpp) on a
// real device (label gpu): every group's result against HostLinalgOps' single operation on that group
// within fp32 tolerance, one grouped GEMM per grouped product whatever the number of groups (the launch
// counter), and the CUDA backend's fit_clusters against the CPU backend's on a planted fleet. Without a
// usable device main() prints the probe's reason and exits 77 (CTest: skipped).
#include "engine/backend/compress_backends.hpp"
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/host_linalg_ops.hpp"
#include "engine/compress/random_matrix.hpp"
#include "kernels/device_probe.hpp"
#include "tests/engine/compress/test_compress_ops_compare.hpp"
#include "tests/support/group_step_inputs.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <cstdio>

using namespace lorafleet;
using namespace lorafleet::compress;
namespace oc = lorafleet::test::ops_compare;

namespace {

constexpr double tol = 1e-5;

std::vector<std::vector<std::size_t>> uneven_groups(std::size_t n) {
    std::vector<std::vector<std::size_t>> g(5);
    for (std::size_t i = 0; i + 1 < n; ++i)
        g[i % 5 == 0 ? 0 : 1 + i % 3].push_back(i);
    g[4].push_back(n - 1);
    return g;
}

void expect_close(const matrix& got, const matrix& want, const char* what) {
    QCOMPARE(got.rows, want.rows);
    QCOMPARE(got.cols, want.cols);
    const double d = oc::rel_diff(want, got);
    QVERIFY2(d < tol, oc::msg(what, d, 0.0, tol).c_str());
}

} // namespace

class TestBatchedCuda : public QObject {
    Q_OBJECT

private slots:
    void groupedOpsMatchHostAndBatchLaunches() {
        const auto batch = oc::planted_batch(256, 192, 4, 10, false, false, 301);
        const auto groups = uneven_groups(batch.size());
        CudaLinalgOps ops;
        HostLinalgOps host(1);
        ops.select_groups(batch, groups);
        const std::vector<std::size_t> active = {3, 0, 4, 2};
        random_stream g(5);
        for (const ops_side s : {ops_side::u, ops_side::v}) {
            const auto d = s == ops_side::u ? batch.d_out : batch.d_in;
            const auto in = test::random_group_step_inputs(ops, active, d, 6, g);
            const auto &x = in.x, &z = in.z, &q = in.q;
            const auto &c = in.c, &f = in.f;
            const auto& k = in.k;
            const auto before = ops.batched_counters().launches;
            const auto pr = ops.project_groups(s, active, x);
            QCOMPARE(ops.batched_counters().launches, before + 1); // one grouped GEMM for all groups
            const auto ac = ops.accumulate_groups(s, active, z);
            const auto ap = ops.apply_blocks_groups(s, active, c, q);
            const auto bg = ops.block_grams_groups(s, active);
            const auto ts = ops.top_small_gram_groups(s, active, f, k);
            for (std::size_t i = 0; i < active.size(); ++i) {
                host.select(batch, groups[active[i]]);
                expect_close(pr[i], host.project(s, x[i]), "project");
                expect_close(ac[i], host.accumulate(s, z[i]), "accumulate");
                expect_close(ap[i], host.apply_blocks(s, c[i], q[i]), "apply_blocks");
                const auto hg = host.block_grams(s);
                for (std::size_t m = 0; m < hg.size(); ++m)
                    expect_close(bg[i][m], hg[m], "block_grams");
                // X E: columns defined up to sign (eigenvectors).
                const matrix want = host.top_small_gram(s, f[i], k[i]);
                matrix got = ts[i];
                const auto sg = oc::column_signs(want, got);
                for (std::int64_t j = 0; j < got.cols; ++j)
                    for (std::int64_t r = 0; r < got.rows; ++r)
                        got(r, j) *= sg[static_cast<std::size_t>(j)];
                expect_close(got, want, "top_small_gram");
                if (QTest::currentTestFailed()) return;
            }
        }
    }

    void fitClustersMatchesCpu_data() {
        QTest::addColumn<int>("method");
        QTest::newRow("jd-full") << int(jd_method::full);
        QTest::newRow("jd-diag") << int(jd_method::diag);
    }
    void fitClustersMatchesCpu() {
        QFETCH(int, method);
        const auto batch = oc::planted_batch(256, 192, 4, 10, false, false, 302);
        const auto groups = uneven_groups(batch.size());
        jd_options o;
        o.method = jd_method(method);
        o.rank = 4;
        o.diag_max_sweeps = 20;
        CpuBackend cpu(cpu_backend_options{1});
        auto gpu = backend::make_cuda_backend();
        const auto want = cpu.fit_clusters(batch, groups, o, {});
        const auto got = gpu->fit_clusters(batch, groups, o, {});
        QCOMPARE(got.size(), want.size());
        for (std::size_t c = 0; c < want.size(); ++c) {
            oc::expect_same_fit(want[c], got[c], tol);
            if (QTest::currentTestFailed()) return;
        }
    }
};

int main(int argc, char** argv) {
    const auto probe = kernels::probe_cuda_devices();
    if (!probe.available) {
        std::printf("SKIP: no usable CUDA device: %s\n", probe.reason.c_str());
        return 77; // CTest: SKIP_RETURN_CODE
    }
    TestBatchedCuda t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_batched_cuda.moc"
