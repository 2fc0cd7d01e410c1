// Device memory in the serving metrics: the recorder derives "other used" from planted parts so that the
// split adds up to the device's total (and never goes negative when the parts overstate), a query that
// answers nothing clears it, the sampled query is asked on the first call; a CPU engine reports no device
// memory (its forward pass has none); and the registry's device_memory_now answers only for a usable
// device (nullopt here without one; with one: free <= total, total the probe's size).
#include "engine/backend/device_registry.hpp"
#include "engine/serve/metrics/metrics_recorder.hpp"
#include "engine/serve/session/serving_session.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

using namespace lorafleet;
using namespace lorafleet::serve;

namespace {
constexpr std::uint64_t kGiB = 1ull << 30, kMiB = 1ull << 20;
} // namespace

class TestServeDeviceMemory : public QObject {
    Q_OBJECT
private slots:
    void otherUsedMakesTheSplitAddUp() {
        metrics_recorder rec(1.0);
        QVERIFY(!rec.snapshot().device_memory); // nothing recorded: not on a device
        device_memory_split d;
        d.device = "Planted GPU";
        d.weights = 13 * kGiB + 512 * kMiB;
        d.kv_cache = 20 * kGiB;
        d.adapters = 1 * kGiB + 3;
        d.free = 100 * kGiB;
        d.total = 141 * kGiB;
        d.used_other = 12345; // ignored: derived
        rec.set_device_memory(d);
        const auto s = rec.snapshot().device_memory;
        QVERIFY(s);
        QCOMPARE(s->device, std::string("Planted GPU"));
        QCOMPARE(s->weights, d.weights);
        QCOMPARE(s->kv_cache, d.kv_cache);
        QCOMPARE(s->adapters, d.adapters);
        QCOMPARE(s->free, d.free);
        QCOMPARE(s->total, d.total);
        // 141 - 100 - 13.5 - 20 - 1 GiB - 3 bytes, worked out by hand.
        QCOMPARE(s->used_other, 6 * kGiB + 512 * kMiB - 3);
        QCOMPARE(s->weights + s->kv_cache + s->adapters + s->used_other + s->free, s->total);

        // Parts that overstate what the runtime says is used: other used is 0, never negative.
        d.free = 130 * kGiB;
        rec.set_device_memory(d);
        QCOMPARE(rec.snapshot().device_memory->used_other, std::uint64_t(0));
        // A free larger than the total (a runtime oddity) as well.
        d.free = d.total + 1;
        rec.set_device_memory(d);
        QCOMPARE(rec.snapshot().device_memory->used_other, std::uint64_t(0));

        rec.set_device_memory(std::nullopt);
        QVERIFY(!rec.snapshot().device_memory);
    }

    void sampledQueryIsAskedAndClears() {
        metrics_recorder rec(1.0);
        int asked = 0;
        device_memory_split d;
        d.weights = 10;
        d.free = 50;
        d.total = 100;
        rec.sample_device_memory([&] {
            ++asked;
            return std::optional<device_memory_split>(d);
        });
        QCOMPARE(asked, 1); // the first call always asks
        QCOMPARE(rec.snapshot().device_memory->used_other, std::uint64_t(40));
        // At most every 50 ms: wait past it, then a pass that has no device memory clears the split.
        QTest::qWait(80);
        rec.sample_device_memory([&] {
            ++asked;
            return std::optional<device_memory_split>();
        });
        QCOMPARE(asked, 2);
        QVERIFY(!rec.snapshot().device_memory);
    }

    void cpuEngineReportsNoDeviceMemory() {
        session_options o;
        o.model_dir = test::demo_model_dir();
        o.engine.device = device_choice::cpu;
        o.engine.kv_cache_bytes = 4 * kMiB;
        serving_session s = open_serving_session(o);
        QCOMPARE(std::string(s.engine->device()), std::string("cpu"));
        const metrics_snapshot m = s.engine->metrics();
        QVERIFY(!m.device_memory);
        QVERIFY(m.memory.weights > 0); // the host split is there as before
        QVERIFY(m.memory.kv_cache_reserved > 0 && m.memory.kv_cache_reserved <= 4 * kMiB);
    }

    void registryMemoryOnlyForAUsableDevice() {
        const backend::device_report& report = backend::devices();
        QVERIFY(!backend::device_memory_now(-1));
        QVERIFY(!backend::device_memory_now(int(report.devices.size()) + 7));
        if (!report.available) {
            QVERIFY(!backend::device_memory_now(0));
            return;
        }
        const auto m = backend::device_memory_now(report.devices.front().index);
        QVERIFY(m);
        QVERIFY(m->free_bytes <= m->total_bytes);
        // cudaMemGetInfo's total and the probe's totalGlobalMem describe the same memory.
        const double probed = double(report.devices.front().memory_mb) * double(kMiB);
        QVERIFY2(std::abs(double(m->total_bytes) - probed) <= 0.02 * probed,
                 qPrintable(QString("%1 vs %2").arg(m->total_bytes).arg(probed)));
    }
};

QTEST_GUILESS_MAIN(TestServeDeviceMemory)
#include "test_serve_device_memory.moc"
