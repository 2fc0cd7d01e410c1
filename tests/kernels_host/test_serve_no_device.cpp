// Without a usable CUDA device (this machine kind, or a build without CUDA) the serving kernels must
// fail cleanly: every device object's create() returns a status naming the failing API and the reason,
// launchers in a CUDA-less build answer "not compiled", and the engine's cuda_transformer throws
// backend_unavailable with that reason — never a crash. Skipped where a device is usable (the gpu-label
// tests cover that case).
#include "engine/backend/cuda/cuda_transformer.hpp"
#include "engine/core/error.hpp"
#include "kernels/device_probe.hpp"
#include "kernels/serve_kernels.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <cstring>

using namespace lorafleet;
namespace k = lorafleet::kernels;

class TestServeNoDevice : public QObject {
    Q_OBJECT
private slots:
    void init() {
        if (k::probe_cuda_devices().available) QSKIP("a CUDA device is usable here");
    }

    void compiledFlagsAgree() { QCOMPARE(k::serve_kernels_compiled(), k::probe_cuda_devices().compiled); }

    void deviceObjectsReportWhy() {
        k::device_model_geometry g;
        g.hidden = 64;
        g.layers = 1;
        g.heads = 4;
        g.kv_heads = 2;
        g.head_dim = 16;
        g.intermediate = 96;
        g.vocab = 32;
        std::unique_ptr<k::device_transformer> model;
        const k::serve_status s = k::device_transformer::create(g, model);
        QVERIFY(!s.ok());
        QVERIFY(!model);
        QVERIFY(std::strlen(s.api) > 0 && std::strlen(s.message) > 0);
        if (!k::serve_kernels_compiled()) QCOMPARE(s.code, k::serve_not_compiled_code);

        std::unique_ptr<k::device_bank> bank;
        const k::serve_status b = k::device_bank::create(1, 4, 1, true, {0}, {}, bank);
        if (!k::serve_kernels_compiled()) {
            QCOMPARE(b.code, k::serve_not_compiled_code);
            QVERIFY(!bank);
            float x = 0;
            QCOMPARE(k::launch_add(&x, &x, 1, nullptr).code, k::serve_not_compiled_code);
        }
    }

    void badGeometryIsRefusedBeforeTheDevice() {
        if (!k::serve_kernels_compiled()) QSKIP("needs the CUDA build (argument checks come first there)");
        k::device_model_geometry g;
        g.hidden = 64;
        g.layers = 1;
        g.heads = 3;
        g.kv_heads = 2; // not a divisor
        g.head_dim = 16;
        g.intermediate = 96;
        g.vocab = 32;
        std::unique_ptr<k::device_transformer> model;
        QCOMPARE(k::device_transformer::create(g, model).code, k::serve_bad_argument_code);
    }

    void cudaTransformerThrowsBackendUnavailable() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto w = serve::model_weights::load(test::fixtures_dir() / "models/tinystories-656k");
        try {
            serve::cuda_transformer gpu(w);
            QFAIL("constructed without a device");
        } catch (const backend_unavailable& e) {
            QVERIFY(std::string(e.what()).find("cuda forward") != std::string::npos);
        }
    }
};

QTEST_GUILESS_MAIN(TestServeNoDevice)
#include "test_serve_no_device.moc"
