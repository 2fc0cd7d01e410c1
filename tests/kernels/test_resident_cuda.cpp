// The CUDA ops' resident-module cache on a real device (label gpu): the same planted fleet compressed
// with every module resident across passes, with a cache that holds about two modules (LRU evictions:
// streaming), and with no cache at all gives the same partition, pass count and errors as the CPU
// backend; the counters say which path ran (hits after the first pass when everything fits, evictions
// when it does not, no hits without a cache). Without a usable device main() exits 77 (skipped).
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/backend/cuda/resident_modules.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/ops_backend.hpp"
#include "kernels/device_probe.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <cstdio>

using namespace lorafleet;
using namespace lorafleet::compress;

namespace {

test::planted_fleet_options fleet_options() {
    test::planted_fleet_options po;
    po.modules = {{"layers.0.q_proj", 96, 80},
                  {"layers.0.v_proj", 48, 80},
                  {"layers.1.q_proj", 96, 80},
                  {"layers.1.v_proj", 48, 80},
                  {"layers.2.q_proj", 64, 80}};
    po.adapter_ranks = {4, 6, 5};
    po.noise = 0.05;
    po.seed = 29;
    return po;
}

compress_options options(const test::planted_fleet_options& po) {
    compress_options o;
    o.jd.rank = po.subspace_rank;
    o.clusters = po.groups;
    o.prefetch_modules = true;
    return o;
}

} // namespace

class TestResidentCuda : public QObject {
    Q_OBJECT

private slots:
    void residentStreamedAndUncachedAgree() {
        const auto po = fleet_options();
        auto fleet = test::make_planted_fleet(po);
        const auto o = options(po);
        CpuBackend cpu(cpu_backend_options{2});
        const auto want = compress_fleet(*fleet.source, cpu, o);
        QVERIFY(test::same_partition(want.assignment, fleet.labels));
        QVERIFY(want.timing.passes >= 2); // else nothing is reused across passes

        // The largest module's fp32 copy, read through the source like the driver does.
        std::size_t largest = 0;
        for (std::size_t m = 0; m < po.modules.size(); ++m)
            largest = std::max(largest, backend::resident_bytes_of(fleet.source->load(m)));

        struct variant {
            const char* name;
            std::size_t cache;
        };
        const variant variants[] = {
            {"resident", std::size_t(64) << 20}, {"streamed", largest * 5 / 2}, {"uncached", 0}};
        for (const auto& v : variants) {
            auto ops = std::make_unique<CudaLinalgOps>(std::size_t(256) << 20);
            auto* raw = ops.get();
            raw->set_resident_budget(v.cache);
            OpsBackend cuda("cuda", std::move(ops));
            const auto got = compress_fleet(*fleet.source, cuda, o);
            const auto rc = raw->resident_counters();
            qInfo("%s (cache %zu bytes): %zu hits, %zu misses, %zu evictions, %zu staged", v.name, v.cache,
                  rc.hits, rc.misses, rc.evictions, raw->stage_hits());
            QVERIFY2(test::same_partition(got.assignment, want.assignment), v.name);
            QCOMPARE(got.timing.passes, want.timing.passes);
            for (std::size_t a = 0; a < want.errors.size(); ++a)
                for (std::size_t m = 0; m < want.errors[a].size(); ++m) {
                    if (std::isnan(want.errors[a][m])) {
                        QVERIFY(std::isnan(got.errors[a][m]));
                        continue;
                    }
                    QVERIFY2(std::abs(got.errors[a][m] - want.errors[a][m]) < 1e-4, v.name);
                }
            if (v.cache == 0) {
                QCOMPARE(rc.hits, std::size_t(0));
                QCOMPARE(rc.modules, std::size_t(0));
            } else if (v.cache == variants[0].cache) {
                QVERIFY(rc.hits >= po.modules.size()); // every module of the second pass
                QCOMPARE(rc.evictions, std::size_t(0));
            } else {
                QVERIFY(rc.evictions > 0); // five modules, room for two: LRU evicts
                QVERIFY(rc.bytes <= v.cache);
            }
        }
    }
};

int main(int argc, char** argv) {
    const auto probe = kernels::probe_cuda_devices();
    if (!probe.available) {
        std::printf("SKIP: no usable CUDA device: %s\n", probe.reason.c_str());
        return 77; // CTest: SKIP_RETURN_CODE
    }
    TestResidentCuda t;
    return QTest::qExec(&t, argc, argv);
}

#include "test_resident_cuda.moc"
