// The serving engine's device choice (engine_options::device, forward_pass.hpp) on a machine where CUDA is
// not usable (every case below QSKIPs when a device is usable: tests/kernels/test_serve_engine_cuda.cpp
// covers that side): --device cuda is a clear backend_unavailable at construction carrying the probe's
// reason; auto serves on the CPU with exactly the tokens of a cpu engine (an independent cpu engine is
// the reference); a provider whose device twin cannot be made stays fully usable on the CPU; and the
// device names parse strictly.
#include "engine/backend/device_registry.hpp"
#include "engine/bank/compressed_bank.hpp"
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "engine/serve/model/forward_pass.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/greedy_requests.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>
#include <future>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<const model_weights> weights() {
    static const auto w = model_weights::load(test::demo_model_dir());
    return w;
}

std::shared_ptr<const Tokenizer> tokenizer() {
    static const std::shared_ptr<const Tokenizer> t = load_tokenizer(test::demo_model_dir());
    return t;
}

// A random JD-Full bank on q/v of every layer: 2 clusters, rank 4, adapters a0..a2, large enough to
// change greedy tokens.
bank::compressed_bank random_bank(const io::model_geometry& g) {
    return test::make_model_bank(g, {.modules = {"q_proj", "v_proj"}, .basis_scale = 0.2, .seed = 5});
}

std::unique_ptr<AdapterProvider> bank_provider() {
    return std::make_unique<BankDelta>(random_bank(weights()->geometry()), weights()->geometry(),
                                       "test bank");
}

// Greedy tokens of each (adapter, prompt) request, all submitted at once.
std::vector<std::vector<int>> serve_all(serving_engine& engine,
                                        const std::vector<std::pair<std::string, std::string>>& requests) {
    return test::serve_all(engine, *tokenizer(), requests, 12);
}

const std::vector<std::pair<std::string, std::string>> requests = {
    {"", "Once upon a time"}, {"a0", "Once upon a time"}, {"a1", "The little dog"}, {"a2", "Tom and Sue"}};

} // namespace

class TestServingEngineDevice : public QObject {
    Q_OBJECT

private slots:
    void deviceNamesParseStrictly() {
        QCOMPARE(parse_device_choice("cpu"), device_choice::cpu);
        QCOMPARE(parse_device_choice("cuda"), device_choice::cuda);
        QCOMPARE(parse_device_choice("auto"), device_choice::automatic);
        for (const char* bad : {"gpu", "CUDA", "", "cuda0"})
            QVERIFY_THROWS_EXCEPTION(usage_error, parse_device_choice(bad));
        QCOMPARE(device_choice_name(device_choice::automatic), std::string_view("auto"));
        engine_options o;
        QCOMPARE(o.device, device_choice::cpu); // nothing changes for callers that do not ask
    }

    void cudaWithoutAUsableDeviceIsBackendUnavailable() {
        const auto& probe = backend::devices();
        if (probe.available) QSKIP("a CUDA device is usable here");
        QVERIFY(!probe.reason.empty());
        for (const bool with_bank : {false, true}) {
            engine_options o;
            o.device = device_choice::cuda;
            o.kv_cache_bytes = 4u << 20;
            try {
                serving_engine engine(weights(), tokenizer(), with_bank ? bank_provider() : nullptr, o);
                QFAIL("the engine was built without a device");
            } catch (const backend_unavailable& e) {
                QVERIFY2(std::string(e.what()).find(probe.reason) != std::string::npos, e.what());
            }
        }
        QVERIFY_THROWS_EXCEPTION(backend_unavailable, resolve_device(device_choice::cuda, nullptr));
    }

    void autoServesOnTheCpuWithTheCpuTokens() {
        const auto& probe = backend::devices();
        if (probe.available) QSKIP("a CUDA device is usable here: auto picks it");
        engine_options o;
        o.kv_cache_bytes = 4u << 20;
        o.threads = 1;
        serving_engine cpu(weights(), tokenizer(), bank_provider(), o);
        QCOMPARE(cpu.device(), std::string_view("cpu"));
        QCOMPARE(cpu.device_note(), std::string("cpu"));
        o.device = device_choice::automatic;
        serving_engine automatic(weights(), tokenizer(), bank_provider(), o);
        QCOMPARE(automatic.device(), std::string_view("cpu"));
        QVERIFY2(automatic.device_note().find(probe.reason) != std::string::npos,
                 automatic.device_note().c_str());
        const auto want = serve_all(cpu, requests);
        const auto got = serve_all(automatic, requests);
        QCOMPARE(got, want);
        // The adapters matter (the comparison is not of the base model four times).
        QVERIFY(want[1] != want[0] && want[2] != want[0]);
        QCOMPARE(want[0].size(), std::size_t(12));
        // On the cpu the adapter set can still change at runtime.
        QVERIFY(automatic.remove_adapter("a2").get());
        QCOMPARE(automatic.adapters().size(), std::size_t(2));
    }

    void aProviderWhoseTwinCannotBeMadeStaysUsableOnTheCpu() {
        const auto& probe = backend::devices();
        if (probe.available) QSKIP("a CUDA device is usable here");
        const auto& g = weights()->geometry();
        BankDelta bank(random_bank(g), g, "test bank");
        QVERIFY(bank.has_device_twin());
        QVERIFY_THROWS_EXCEPTION(backend_unavailable, bank.device_twin());
        QVERIFY(bank.remove("a1")); // no twin was made: nothing to keep in step with
        QCOMPARE(bank.find("a1"), -1);

        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const fs::path dir = fs::path(tmp.path().toStdString()) / "crafted";
        test::write_crafted_adapter(dir, test::crafted_llama_adapter(g, {"q_proj", "v_proj"}, 2, 4.0));
        CachedLoraDelta raw(g, 16u << 20);
        QCOMPARE(raw.add(dir, "crafted").slot, 0);
        QVERIFY(raw.has_device_twin());
        QVERIFY_THROWS_EXCEPTION(backend_unavailable, raw.device_twin());
        const int slot = 0;
        QCOMPARE(raw.prepare(std::span(&slot, 1)), std::size_t(1)); // the host cache still serves
        QVERIFY(raw.is_resident(0));
        QCOMPARE(raw.add(dir, "again").slot, 1);
        QVERIFY(raw.remove("crafted"));
    }
};

QTEST_GUILESS_MAIN(TestServingEngineDevice)
#include "test_serving_engine_device.moc"
