// The CUDA ops' resident-module cache on a real device (label gpu): the same planted fleet compressed
// with every module resident across passes, with a cache that holds about two modules (LRU evictions:
// streaming), and with no cache at all gives the same partition, pass count and errors as the CPU
// backend; the counters say which path ran (hits after the first pass when everything fits, evictions
// when it does not, no hits without a cache). The compact storage: the same fleet rounded to bf16 (what a
// bf16 PEFT file holds) is cached in 16 bits, and the run equals, bit for bit (labels, passes, errors,
// bases), the run with compaction off, and the CPU backend's partition and passes; its cache holds half
// the bytes. An fp32 fleet is never compacted. Without a usable device main() exits 77 (skipped).
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/backend/cuda/resident_modules.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/ops_backend.hpp"
#include "kernels/device_probe.hpp"
#include "kernels/half_elements.hpp"
#include "tests/support/planted_fleet.hpp"
#include "tests/support/same_bits.hpp"

#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

using namespace lorafleet;
using namespace lorafleet::compress;

namespace {

using test::same_bits;

test::planted_fleet_options fleet_options() {
    return test::three_shape_fleet_options(29);
}

compress_options options(const test::planted_fleet_options& po) {
    compress_options o;
    o.jd.rank = po.subspace_rank;
    o.clusters = po.groups;
    o.prefetch_modules = true;
    return o;
}

// The fleet's factors rounded to bf16 and read back into fp32: every value exact in bf16.
std::unique_ptr<InMemoryModuleSource> rounded_to_bf16(ModuleSource& source) {
    auto out = std::make_unique<InMemoryModuleSource>(source.adapter_count());
    for (std::size_t m = 0; m < source.module_count(); ++m) {
        const auto shape = source.module(m);
        const auto idx = out->add_module(shape.name, shape.d_out, shape.d_in);
        const auto batch = source.load(m);
        for (const auto& f : batch.adapters) {
            owned_factors o{f.adapter, f.rank, {f.a.begin(), f.a.end()}, {f.b.begin(), f.b.end()}};
            for (auto* side : {&o.a, &o.b})
                for (auto& x : *side)
                    x = kernels::round_through<kernels::bf16_bits>(x);
            out->set_factors(idx, std::move(o));
        }
    }
    return out;
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
            QCOMPARE(rc.compactions, std::size_t(0)); // fp32 noise: never exact in 16 bits
            QCOMPARE(rc.compact_modules, std::size_t(0));
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

    void compactStorageIsExact() {
        const auto po = fleet_options();
        auto planted = test::make_planted_fleet(po);
        auto source = rounded_to_bf16(*planted.source);
        const auto o = options(po);
        CpuBackend cpu(cpu_backend_options{2});
        const auto want = compress_fleet(*source, cpu, o);
        QVERIFY(test::same_partition(want.assignment, planted.labels));
        QVERIFY(want.timing.passes >= 2);

        struct run {
            compression_result result;
            CudaLinalgOps::resident_stats counters;
        };
        const auto compress_on_device = [&](bool compact) {
            auto ops = std::make_unique<CudaLinalgOps>(std::size_t(256) << 20);
            auto* raw = ops.get();
            raw->set_resident_budget(std::size_t(64) << 20); // every module fits, in fp32 or not
            raw->set_resident_compact(compact);
            OpsBackend cuda("cuda", std::move(ops));
            run r{compress_fleet(*source, cuda, o), {}};
            r.counters = raw->resident_counters();
            qInfo("compact %d: %zu hits, %zu misses, %zu cached modules (%zu compact, %zu compactions), %zu "
                  "bytes, %zu saved",
                  int(compact), r.counters.hits, r.counters.misses, r.counters.modules,
                  r.counters.compact_modules, r.counters.compactions, r.counters.bytes,
                  r.counters.compact_saved_bytes);
            return r;
        };
        const auto on = compress_on_device(true);
        const auto off = compress_on_device(false);

        // Compaction is lossless: the device computes on the same fp32 values either way.
        QCOMPARE(on.result.assignment, off.result.assignment);
        QCOMPARE(on.result.timing.passes, off.result.timing.passes);
        for (std::size_t a = 0; a < off.result.errors.size(); ++a)
            for (std::size_t m = 0; m < off.result.errors[a].size(); ++m) {
                const double x = on.result.errors[a][m], y = off.result.errors[a][m];
                QVERIFY(std::memcmp(&x, &y, sizeof x) == 0); // NaN (missing) included
            }
        QCOMPARE(on.result.bases.size(), off.result.bases.size());
        for (std::size_t c = 0; c < off.result.bases.size(); ++c)
            for (std::size_t m = 0; m < off.result.bases[c].size(); ++m) {
                QVERIFY(same_bits(on.result.bases[c][m].u, off.result.bases[c][m].u));
                QVERIFY(same_bits(on.result.bases[c][m].v, off.result.bases[c][m].v));
            }
        // And the CPU's partition and pass count.
        QVERIFY(test::same_partition(on.result.assignment, want.assignment));
        QCOMPARE(on.result.timing.passes, want.timing.passes);

        // The counters: every cached module compact with compaction on, none with it off, half the bytes.
        QVERIFY(on.counters.hits >= po.modules.size());
        QCOMPARE(on.counters.hits, off.counters.hits);
        QVERIFY(on.counters.modules > 0);
        QCOMPARE(on.counters.modules, off.counters.modules);
        QCOMPARE(on.counters.compact_modules, on.counters.modules);
        QVERIFY(on.counters.compactions >= on.counters.modules);
        QCOMPARE(off.counters.compact_modules, std::size_t(0));
        QCOMPARE(off.counters.compactions, std::size_t(0));
        QCOMPARE(on.counters.bytes * 2, off.counters.bytes);
        QCOMPARE(on.counters.compact_saved_bytes, off.counters.bytes - on.counters.bytes);
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
