// The serving engine on a CUDA device (engine_options::device, forward_pass.hpp) against the same engine on
// the CPU: the same concurrent requests (continuous batching, several adapters in one step) give the same
// greedy tokens with no adapters, with a compressed bank (JD-Full and JD-Diag, BankDelta's device twin) and
// with raw PEFT adapters behind a device cache too small for all of them (CachedLoraDelta's twin,
// evictions). On the device, adding or removing an adapter is refused with unsupported_error and changes
// nothing. The CPU engine is the reference; the device computes to float rounding, so a greedy token could
// in principle differ at a near tie (none at these sizes). Exit code 77 (CTest: skipped) when no CUDA
// device is usable. The device runs its exactness mode (LORAFLEET_DEVICE_PRECISION=fp32, set before any
// engine is made): bf16 serving is checked against the CPU in test_serve_device_forward.
#include "engine/bank/compressed_bank.hpp"
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "engine/serve/model/forward_pass.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "kernels/device_probe.hpp"
#include "tests/support/greedy_requests.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cstdio>
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

// A random bank on q/k/v/o of every layer: 2 clusters, rank 4, adapters a0..a3.
bank::compressed_bank random_bank(compress::jd_method kind) {
    return test::make_model_bank(weights()->geometry(), {.kind = kind,
                                                         .modules = {"q_proj", "k_proj", "v_proj", "o_proj"},
                                                         .adapters = 4,
                                                         .basis_scale = 0.15,
                                                         .seed = 17 + std::uint64_t(kind)});
}

using test::request_list;

std::vector<std::vector<int>> serve_all(serving_engine& engine, const request_list& requests) {
    return test::serve_all(engine, *tokenizer(), requests, 16);
}

engine_options options(device_choice d) {
    engine_options o;
    o.device = d;
    o.kv_cache_bytes = 8u << 20;
    o.threads = 2;
    return o;
}

void compare_tokens(const std::vector<std::vector<int>>& got, const std::vector<std::vector<int>>& want,
                    const request_list& requests, const char* what) {
    QCOMPARE(got.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i)
        QVERIFY2(got[i] == want[i], qPrintable(QString("%1: request %2 (adapter '%3') differs on the device")
                                                   .arg(what)
                                                   .arg(i)
                                                   .arg(QString::fromStdString(requests[i].first))));
}

} // namespace

class TestServeEngineCuda : public QObject {
    Q_OBJECT

private slots:
    void baseModelMatchesTheCpuEngine() {
        const request_list requests = {{"", "Once upon a time"}, {"", "The cat sat"}, {"", "Lily was happy"}};
        serving_engine cpu(weights(), tokenizer(), nullptr, options(device_choice::cpu));
        serving_engine gpu(weights(), tokenizer(), nullptr, options(device_choice::cuda));
        serving_engine automatic(weights(), tokenizer(), nullptr, options(device_choice::automatic));
        QCOMPARE(gpu.device(), std::string_view("cuda"));
        QCOMPARE(automatic.device(), std::string_view("cuda"));
        const auto want = serve_all(cpu, requests);
        compare_tokens(serve_all(gpu, requests), want, requests, "cuda");
        compare_tokens(serve_all(automatic, requests), want, requests, "auto");
    }

    void compressedBankMatchesTheCpuEngine() {
        const request_list requests = {{"a0", "Once upon a time"}, {"", "Once upon a time"},
                                       {"a1", "The cat sat"},      {"a2", "Tom and Sue"},
                                       {"a3", "Lily was happy"},   {"a1", "Once upon a time"}};
        for (const auto kind : {compress::jd_method::full, compress::jd_method::diag}) {
            const auto& g = weights()->geometry();
            serving_engine cpu(weights(), tokenizer(),
                               std::make_unique<BankDelta>(random_bank(kind), g, "bank"),
                               options(device_choice::cpu));
            serving_engine gpu(weights(), tokenizer(),
                               std::make_unique<BankDelta>(random_bank(kind), g, "bank"),
                               options(device_choice::cuda));
            QCOMPARE(gpu.device(), std::string_view("cuda"));
            const auto want = serve_all(cpu, requests);
            QVERIFY(want[0] != want[1]); // the adapters change the text
            compare_tokens(serve_all(gpu, requests), want, requests, "bank");

            // Changing the adapter set is refused on the device, and nothing changes.
            QVERIFY_THROWS_EXCEPTION(unsupported_error, gpu.remove_adapter("a0").get());
            QCOMPARE(gpu.adapters().size(), std::size_t(4));
            compare_tokens(serve_all(gpu, requests), want, requests, "bank after a refused remove");
        }
    }

    void bankTwinRefusesChangesOnceMade() {
        const auto& g = weights()->geometry();
        BankDelta bank(random_bank(compress::jd_method::full), g, "bank");
        QVERIFY(bank.remove("a3")); // before the twin: a normal removal
        QVERIFY(bank.device_twin() != nullptr);
        QCOMPARE(bank.device_twin(), bank.device_twin()); // made once
        QVERIFY_THROWS_EXCEPTION(unsupported_error, bank.remove("a0"));
        QCOMPARE(bank.find("a0"), 0);
        QVERIFY(!bank.remove("no-such-adapter"));
    }

    void rawAdaptersBehindASmallDeviceCacheMatchTheCpuEngine() {
        const auto& g = weights()->geometry();
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        std::vector<fs::path> dirs;
        std::uint64_t largest = 0;
        io::peft_load_options load;
        load.base = &g;
        for (int i = 0; i < 3; ++i) {
            dirs.push_back(fs::path(tmp.path().toStdString()) / ("r" + std::to_string(i)));
            test::write_crafted_adapter(
                dirs.back(),
                test::crafted_llama_adapter(g, {"q_proj", "v_proj", "o_proj"}, 2 + 2 * i, 8.0 + 4 * i));
            largest = std::max(largest,
                               CachedLoraDelta::resident_bytes_of(io::load_peft_adapter(dirs.back(), load)));
        }
        auto make = [&] {
            auto p = std::make_unique<CachedLoraDelta>(g, 2 * largest); // two of the three fit
            for (int i = 0; i < 3; ++i)
                p->add(dirs[std::size_t(i)], "r" + std::to_string(i));
            return p;
        };
        const request_list requests = {{"r0", "Once upon a time"}, {"r1", "Once upon a time"},
                                       {"r2", "Once upon a time"}, {"", "The cat sat"},
                                       {"r2", "Tom and Sue"},      {"r0", "Lily was happy"}};
        serving_engine cpu(weights(), tokenizer(), make(), options(device_choice::cpu));
        serving_engine gpu(weights(), tokenizer(), make(), options(device_choice::cuda));
        QCOMPARE(gpu.device(), std::string_view("cuda"));
        const auto want = serve_all(cpu, requests);
        QVERIFY(want[0] != want[2]);
        compare_tokens(serve_all(gpu, requests), want, requests, "raw");
        QVERIFY(gpu.metrics().adapter_cache_misses >=
                3); // every adapter was copied to the device at least once
        QVERIFY_THROWS_EXCEPTION(unsupported_error, gpu.add_adapter(dirs[0], "again").get());
        QCOMPARE(gpu.adapters().size(), std::size_t(3));
    }
};

int main(int argc, char** argv) {
    const auto probe = kernels::probe_cuda_devices();
    if (!probe.available) {
        std::printf("SKIP: no usable CUDA device (%s)\n", probe.reason.c_str());
        return 77; // CTest SKIP_RETURN_CODE: reported as skipped, not passed or failed
    }
    qputenv("LORAFLEET_DEVICE_PRECISION", "fp32");
    TestServeEngineCuda test;
    return QTest::qExec(&test, argc, argv);
}

#include "test_serve_engine_cuda.moc"
