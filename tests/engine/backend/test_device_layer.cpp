// The engine's device layer (engine/backend): the registry probes once and every caller, from any
// thread, gets the same report, equal to an independent uncached probe; the one device vocabulary parses
// and names "cpu" / "cuda" / "auto" and rejects anything else; the kernels' two error conventions
// (serve_status values, linalg_error exceptions) both become one backend::device_error that is a
// backend_unavailable and says where, which API, why and the code; the opaque device-adapter handle
// only turns back into a kernels type when the CUDA glue made it.
#include "engine/backend/compress_backends.hpp"
#include "engine/backend/cuda/cuda_device_adapters.hpp"
#include "engine/backend/cuda/cuda_status.hpp"
#include "engine/backend/device_choice.hpp"
#include "engine/backend/device_error.hpp"
#include "engine/backend/device_registry.hpp"
#include "engine/core/error.hpp"
#include "tests/support/watchdog.hpp"

#include <QTest>

#include <atomic>
#include <thread>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::backend;

namespace {

// A device_adapters the CUDA glue did not make.
class foreign_adapters final : public device_adapters {
public:
    std::size_t prepare(std::span<const int> wanted) override { return wanted.size(); }
    device_adapter_counters counters() const override { return {}; }
};

} // namespace

class TestDeviceLayer : public QObject {
    Q_OBJECT

private slots:
    void registryAgreesWithAnIndependentProbe() {
        const device_report& cached = devices();
        const device_report fresh = probe_devices_now();
        QCOMPARE(cached.compiled, fresh.compiled);
        QCOMPARE(cached.available, fresh.available);
        QCOMPARE(cached.reason, fresh.reason);
        QCOMPARE(cached.runtime_version, fresh.runtime_version);
        QCOMPARE(cached.devices.size(), fresh.devices.size());
        for (std::size_t i = 0; i < fresh.devices.size(); ++i) {
            QCOMPARE(cached.devices[i].name, fresh.devices[i].name);
            QCOMPARE(cached.devices[i].memory_mb, fresh.devices[i].memory_mb);
            QCOMPARE(cached.devices[i].usable, cached.available);
        }
        // "available" and "reason" say the same thing.
        QCOMPARE(cached.reason.empty(), cached.available);
        if (!cached.compiled) QVERIFY(!cached.available);
    }

    void registryIsOneObjectForEveryThread() {
        const test::watchdog guard("registry from many threads", std::chrono::seconds(60));
        const long rounds = test::stress_iterations(50);
        const device_report* first = &devices();
        std::atomic<int> different{0};
        for (long r = 0; r < rounds; ++r) {
            std::atomic<bool> go{false};
            std::vector<std::thread> threads;
            for (int t = 0; t < 8; ++t)
                threads.emplace_back([&] {
                    while (!go.load())
                        std::this_thread::yield();
                    if (&devices() != first) different.fetch_add(1);
                });
            go.store(true);
            for (auto& t : threads)
                t.join();
        }
        QCOMPARE(different.load(), 0);
    }

    void oneDeviceVocabulary() {
        QCOMPARE(parse_device_choice("cpu"), device_choice::cpu);
        QCOMPARE(parse_device_choice("cuda"), device_choice::cuda);
        QCOMPARE(parse_device_choice("auto"), device_choice::automatic);
        for (const device_choice d : {device_choice::cpu, device_choice::cuda, device_choice::automatic})
            QCOMPARE(parse_device_choice(device_choice_name(d)), d);
        for (const char* bad : {"", "gpu", "CPU", "auto ", "tpu"}) {
            try {
                (void)parse_device_choice(bad, "--gpu-flag");
                QFAIL("accepted a device name that does not exist");
            } catch (const usage_error& e) {
                const std::string what = e.what();
                QCOMPARE(e.where(), std::string("--gpu-flag"));
                QVERIFY2(what.find("unknown device '" + std::string(bad) + "' (use cpu, cuda or auto)") !=
                             std::string::npos,
                         e.what());
            }
        }
        // Compression takes the same words (and the enum).
        QCOMPARE(make_compress_backend(device_choice::cpu, 1)->name(), std::string("cpu"));
        QCOMPARE(make_compress_backend("cpu", 1)->name(), std::string("cpu"));
        try {
            (void)make_compress_backend("gpu");
            QFAIL("compression accepted an unknown device");
        } catch (const usage_error& e) {
            QCOMPARE(e.where(), std::string("--device")); // the flag of compress and add
        }
        if (!devices().available) {
            QCOMPARE(make_compress_backend(device_choice::automatic, 1)->name(), std::string("cpu"));
            QVERIFY_THROWS_EXCEPTION(backend_unavailable, make_compress_backend(device_choice::cuda));
        }
    }

    void serveStatusBecomesDeviceError() {
        throw_if_failed(kernels::serve_status{}, "nothing wrong"); // ok: returns
        const kernels::serve_status failed{2, "cudaMalloc", "out of memory"};
        try {
            throw_if_failed(failed, "cuda forward");
            QFAIL("a failed status did not throw");
        } catch (const device_error& e) {
            QCOMPARE(std::string(e.what()), std::string("cuda forward: cudaMalloc: out of memory (code 2)"));
            QCOMPARE(e.api(), std::string("cudaMalloc"));
            QCOMPARE(e.code(), 2LL);
            QCOMPARE(e.where(), std::string("cuda forward"));
        }
        // Callers that handle backend_unavailable (the auto fallback) see it as one.
        QVERIFY_THROWS_EXCEPTION(backend_unavailable, throw_if_failed(failed, "x"));
    }

    void linalgErrorBecomesTheSameDeviceError() {
        try {
            translate_linalg(
                "cuda", []() -> int { throw kernels::linalg_error("cublasSgemm", 13, "execution failed"); });
            QFAIL("the linalg_error did not surface");
        } catch (const device_error& e) {
            QCOMPARE(std::string(e.what()), std::string("cuda: cublasSgemm: execution failed (code 13)"));
            QCOMPARE(e.api(), std::string("cublasSgemm"));
            QCOMPARE(e.code(), 13LL);
        }
        QCOMPARE(translate_linalg("cuda", [] { return 7; }), 7); // no error: the value passes through
    }

    void opaqueHandleOnlyUnwrapsWhatTheGlueMade() {
        QVERIFY(kernel_view(nullptr) == nullptr);
        foreign_adapters foreign;
        QVERIFY_THROWS_EXCEPTION(usage_error, kernel_view(&foreign));
    }
};

QTEST_GUILESS_MAIN(TestDeviceLayer)
#include "test_device_layer.moc"
