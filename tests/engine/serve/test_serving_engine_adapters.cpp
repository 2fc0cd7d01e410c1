// serving_engine's adapter loading off the engine thread (TinyStories-656K demo model): an add whose
// loading is stuck (a provider double whose prepare_add blocks on a gate) neither stops other requests
// nor the destructor, and fails with a timeout_error at adapter_load_timeout_s; a result that arrives
// after the timeout is dropped; adds run one at a time in call order; a removed adapter's requests are
// all over before its slot is reused; 20k add/remove cycles through the engine keep the slot count
// bounded (real CachedLoraDelta). Every wait that would hang on a lost wakeup is under a watchdog.
#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/adapters/raw_lora_delta.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/support/watchdog.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

adapter_info info(std::string name, int slot) {
    adapter_info a;
    a.name = std::move(name);
    a.slot = slot;
    return a;
}

using lorafleet::test::watchdog; // tests/support/watchdog.hpp: a hang fails the test

struct model_fixture {
    std::shared_ptr<const model_weights> weights;
    std::shared_ptr<const Tokenizer> tokenizer;
};

const model_fixture& fixture() {
    static const model_fixture f = [] {
        const fs::path dir = test::source_dir() / "resources/models/tinystories-656k";
        return model_fixture{model_weights::load(dir), std::shared_ptr<const Tokenizer>(load_tokenizer(dir))};
    }();
    return f;
}

// Where a stuck load waits: prepare_add of a name starting with "stuck" blocks until the gate opens.
struct gate {
    std::mutex mutex;
    std::condition_variable cv;
    bool open = false;
    int entered = 0;                // prepare_add calls that reached the gate
    int returned = 0;               // ... and left it
    std::vector<std::string> order; // names in the order prepare_add began

    void wait_for(int n_entered, int n_returned) {
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return entered >= n_entered && returned >= n_returned; });
    }
    void release() {
        {
            std::lock_guard lock(mutex);
            open = true;
        }
        cv.notify_all();
    }
};

// A provider double: "alpha" at slot 0 (a small rank-2 LoRA on every module), adds that install an
// adapter without weights (it then acts like the base model), and slots reused lowest-first like the
// real providers.
class gated_provider : public AdapterProvider {
public:
    gated_provider(const io::model_geometry& g, std::shared_ptr<gate> gt)
        : m_delta(g), m_gate(std::move(gt)) {
        for (int l = 0; l < g.num_layers; ++l) {
            const auto shape = *g.linear_shape("q_proj");
            lora_module_weights w;
            w.rank = 2;
            w.a.assign(std::size_t(2 * shape.d_in), 0.01f);
            w.b.assign(std::size_t(shape.d_out * 2), 0.01f);
            m_delta.set_module(0, l, module_kind::q_proj, std::move(w));
        }
        m_slots.push_back("alpha");
    }
    std::string_view mode() const override { return "raw"; }
    int find(std::string_view name) const override {
        for (std::size_t s = 0; s < m_slots.size(); ++s)
            if (m_slots[s] == name) return int(s);
        return -1;
    }
    std::vector<adapter_info> list() const override {
        std::vector<adapter_info> out;
        for (std::size_t s = 0; s < m_slots.size(); ++s)
            if (!m_slots[s].empty()) out.push_back(info(m_slots[s], int(s)));
        return out;
    }
    std::size_t prepare(std::span<const int> wanted) override { return wanted.size(); }
    std::unique_ptr<prepared_adapter> prepare_add(const fs::path& dir,
                                                  const std::string& name) const override {
        std::unique_lock lock(m_gate->mutex);
        m_gate->order.push_back(name);
        if (name.starts_with("stuck")) {
            ++m_gate->entered;
            m_gate->cv.notify_all();
            m_gate->cv.wait(lock, [&] { return m_gate->open; });
            ++m_gate->returned;
            m_gate->cv.notify_all();
        }
        if (name.starts_with("bad")) throw format_error(dir.string(), "bad adapter (test)");
        auto p = std::make_unique<prepared_adapter>();
        p->name = name;
        p->source = dir.string();
        return p;
    }
    adapter_info install(std::unique_ptr<prepared_adapter> p) override {
        if (find(p->name) >= 0) throw usage_error(p->name, "name taken");
        std::size_t s = 0;
        while (s < m_slots.size() && !m_slots[s].empty())
            ++s;
        if (s == m_slots.size()) m_slots.emplace_back();
        m_slots[s] = p->name;
        return info(p->name, int(s));
    }
    bool remove(std::string_view name) override {
        const int s = find(name);
        if (s < 0) return false;
        m_slots[std::size_t(s)].clear();
        m_delta.erase_slot(s);
        return true;
    }
    adapter_memory_stats memory() const override { return {}; }
    void apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
               std::span<const int> token_adapter, worker_pool* pool) override {
        m_delta.apply(layer, m, x, y, n_tokens, token_adapter, pool);
    }

private:
    RawLoraDelta m_delta;
    std::shared_ptr<gate> m_gate;
    std::vector<std::string> m_slots; // "" = free
};

engine_options options(double load_timeout_s) {
    engine_options o;
    o.threads = 1;
    o.kv_cache_bytes = 8u << 20;
    o.adapter_load_timeout_s = load_timeout_s;
    return o;
}

// Submits a short greedy request; the future is set by on_done.
std::future<completion_result> complete(serving_engine& engine, const std::string& adapter,
                                        int max_tokens = 8) {
    auto promise = std::make_shared<std::promise<completion_result>>();
    auto future = promise->get_future();
    completion_request r;
    r.adapter = adapter;
    r.prompt = fixture().tokenizer->encode("Once upon a time", true);
    r.params.max_tokens = max_tokens;
    r.params.stop_at_eos = false;
    r.on_done = [promise](const completion_result& res) { promise->set_value(res); };
    engine.submit(std::move(r));
    return future;
}

template <class T> QString error_of(std::future<T>& f) {
    try {
        f.get();
    } catch (const std::exception& e) {
        return QString::fromStdString(e.what());
    }
    return "NO EXCEPTION";
}

} // namespace

class TestServingEngineAdapters : public QObject {
    Q_OBJECT
    QTemporaryDir m_tmp;
    fs::path tmp() const { return fs::path(m_tmp.path().toStdString()); }

private slots:
    void aStuckAddDoesNotStopServingAndTimesOut() {
        auto gt = std::make_shared<gate>();
        serving_engine engine(fixture().weights, fixture().tokenizer,
                              std::make_unique<gated_provider>(fixture().weights->geometry(), gt),
                              options(3.0));
        watchdog guard("stuck add", 60s);
        const auto t0 = std::chrono::steady_clock::now();
        auto stuck = engine.add_adapter("/stuck", "stuck-1");
        gt->wait_for(1, 0); // the loader is inside prepare_add now
        // Requests of another adapter and of the base model complete while the add is stuck.
        for (int i = 0; i < 4; ++i) {
            auto a = complete(engine, "alpha");
            auto b = complete(engine, "");
            QCOMPARE(int(a.get().status), int(completion_status::finished));
            QCOMPARE(int(b.get().status), int(completion_status::finished));
        }
        QVERIFY2(stuck.wait_for(0s) == std::future_status::timeout,
                 "the add finished while its loader was stuck");
        QVERIFY(engine.health().since_progress_s < 2.0);
        // An add queued behind the stuck one waits its turn.
        auto next = engine.add_adapter("/next", "next");
        // The stuck add fails with a timeout error after ~3 s.
        const QString msg = error_of(stuck);
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        QVERIFY2(msg.contains("took longer than 3 s"), qPrintable(msg));
        QVERIFY(waited >= 2.9);
        QCOMPARE(next.get().name, std::string("next")); // the queue moved on
        // The abandoned loader finishes later; its result is dropped, never installed.
        gt->release();
        gt->wait_for(1, 1);
        auto after = engine.add_adapter("/after", "after");
        QCOMPARE(after.get().name, std::string("after"));
        for (const auto& a : engine.adapters())
            QVERIFY2(!QString::fromStdString(a.name).startsWith("stuck"), a.name.c_str());
    }

    void theTimeoutIsATimeoutError() {
        auto gt = std::make_shared<gate>();
        serving_engine engine(fixture().weights, fixture().tokenizer,
                              std::make_unique<gated_provider>(fixture().weights->geometry(), gt),
                              options(0.2));
        watchdog guard("timeout type", 60s);
        auto f = engine.add_adapter("/stuck", "stuck-x");
        QVERIFY_THROWS_EXCEPTION(timeout_error, f.get());
        // Errors of prepare_add reach the caller as they are; a taken name is a usage_error.
        auto bad = engine.add_adapter("/bad", "bad-1");
        QVERIFY_THROWS_EXCEPTION(format_error, bad.get());
        auto taken = engine.add_adapter("/alpha", "alpha");
        QVERIFY_THROWS_EXCEPTION(usage_error, taken.get());
        gt->release();
        gt->wait_for(1, 1);
    }

    void destroyingTheEngineWithAStuckLoaderDoesNotHang() {
        auto gt = std::make_shared<gate>();
        std::future<adapter_info> stuck, queued;
        {
            watchdog guard("destructor with a stuck loader", 30s);
            serving_engine engine(fixture().weights, fixture().tokenizer,
                                  std::make_unique<gated_provider>(fixture().weights->geometry(), gt),
                                  options(600));
            stuck = engine.add_adapter("/stuck", "stuck-d");
            queued = engine.add_adapter("/q", "queued");
            gt->wait_for(1, 0);
        } // ~serving_engine: must not wait for the loader
        QVERIFY(stuck.wait_for(0s) == std::future_status::ready);
        QVERIFY_THROWS_EXCEPTION(usage_error, stuck.get());
        QVERIFY_THROWS_EXCEPTION(usage_error, queued.get());
        // The loader still holds the provider; it ends once released, reaching no engine.
        watchdog guard("loader after the engine", 30s);
        gt->release();
        gt->wait_for(1, 1);
    }

    void addsRunOneAtATimeInCallOrder() {
        auto gt = std::make_shared<gate>();
        serving_engine engine(fixture().weights, fixture().tokenizer,
                              std::make_unique<gated_provider>(fixture().weights->geometry(), gt),
                              options(60));
        watchdog guard("add order", 60s);
        std::vector<std::future<adapter_info>> futures;
        for (int i = 0; i < 20; ++i)
            futures.push_back(engine.add_adapter("/o", "o" + std::to_string(i)));
        for (int i = 0; i < 20; ++i)
            QCOMPARE(futures[std::size_t(i)].get().slot, i + 1);
        std::lock_guard lock(gt->mutex);
        QCOMPARE(int(gt->order.size()), 20);
        for (int i = 0; i < 20; ++i)
            QCOMPARE(gt->order[std::size_t(i)], "o" + std::to_string(i));
    }

    void aRemovedAdaptersRequestsEndBeforeItsSlotIsReused() {
        auto gt = std::make_shared<gate>();
        serving_engine engine(fixture().weights, fixture().tokenizer,
                              std::make_unique<gated_provider>(fixture().weights->geometry(), gt),
                              options(60));
        watchdog guard("slot reuse", 60s);
        const int slot = engine.add_adapter("/x", "x").get().slot;
        auto request = complete(engine, "x", 400);
        QVERIFY(engine.remove_adapter("x").get());
        // remove's future is ready only after the request's on_done ran.
        QVERIFY(request.wait_for(0s) == std::future_status::ready);
        QCOMPARE(int(request.get().status), int(completion_status::cancelled));
        QCOMPARE(engine.add_adapter("/y", "y").get().slot, slot);
        QCOMPARE(int(complete(engine, "y").get().status), int(completion_status::finished));
    }

    // Stress for every wait/notify pair of the engine at once: submitting threads (some requests cancelled
    // at once), a thread adding and removing adapters (the loader wake-up) and a shutdown that lands in
    // the middle. Every accepted request gets exactly one on_done, every add/remove future resolves; a
    // lost wake-up or a missed completion hangs (watchdog) or miscounts.
    void submitCancelAddRemoveAndShutdownStress() {
        const char* scale = std::getenv("LORAFLEET_STRESS_SCALE");
        const int per_thread = std::max(1, int(150 * (scale ? std::atof(scale) : 1.0)));
        watchdog guard("engine stress", 600s);
        for (int round = 0; round < 4; ++round) {
            auto gt = std::make_shared<gate>();
            auto engine = std::make_unique<serving_engine>(
                fixture().weights, fixture().tokenizer,
                std::make_unique<gated_provider>(fixture().weights->geometry(), gt), options(60));
            std::mutex m;
            std::vector<std::shared_ptr<std::atomic<int>>> accepted; // on_done count per accepted request
            std::atomic<int> refused{0}, done_but_refused{0};
            const std::vector<std::string> prompts = {"Once upon a time", "The dog", "A"};
            auto submitter = [&](int t) {
                for (int i = 0; i < per_thread; ++i) {
                    auto done = std::make_shared<std::atomic<int>>(0);
                    completion_request r;
                    const int pick = (i * 7 + t) % 6;
                    r.adapter = pick < 2 ? "" : pick == 2 ? "alpha" : "x" + std::to_string(pick % 3);
                    r.prompt = fixture().tokenizer->encode(prompts[std::size_t(i % 3)], true);
                    r.params.max_tokens = 1 + (i + t) % 6;
                    r.on_done = [done](const completion_result&) { done->fetch_add(1); };
                    try {
                        const auto id = engine->submit(std::move(r));
                        {
                            std::lock_guard lock(m);
                            accepted.push_back(done);
                        }
                        if (i % 3 == 0) engine->cancel(id);
                        // Now and then keep pace with the engine: wait for this request's on_done.
                        if (i % 5 == 4)
                            while (done->load() == 0)
                                std::this_thread::sleep_for(std::chrono::microseconds(200));
                    } catch (const usage_error&) {
                        ++refused; // unknown adapter (removed meanwhile) or after shutdown
                        if (done->load() != 0) ++done_but_refused;
                    }
                }
            };
            auto changer = [&] {
                for (int i = 0; i < per_thread / 3; ++i) {
                    const std::string name = "x" + std::to_string(i % 3);
                    try {
                        engine->add_adapter("/x", name).get();
                    } catch (const usage_error&) {
                    }
                    if (i % 2 == 1) try {
                            engine->remove_adapter(name).get();
                        } catch (const usage_error&) {
                        }
                }
            };
            engine->add_adapter("/x", "x0").get();
            std::vector<std::thread> threads;
            for (int t = 0; t < 3; ++t)
                threads.emplace_back(submitter, t);
            threads.emplace_back(changer);
            if (round % 2 == 1) {
                // In the middle of everything: once about half the requests are in.
                for (;;) {
                    {
                        std::lock_guard lock(m);
                        if (int(accepted.size()) + refused.load() >= 3 * per_thread / 2) break;
                    }
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
                }
                engine->shutdown(round == 3);
            }
            for (auto& th : threads)
                th.join();
            engine.reset(); // finishes or cancels what is left
            QCOMPARE(done_but_refused.load(), 0);
            std::lock_guard lock(m);
            for (const auto& d : accepted)
                QCOMPARE(d->load(), 1);
            qInfo("round %d: %zu accepted, %d refused", round, accepted.size(), refused.load());
        }
    }

    // 20k add/remove cycles through the engine on a real CachedLoraDelta: the slot count stays bounded.
    // Also the stress test of the loader -> engine wake-up (a lost wake-up hangs an add: watchdog).
    void manyAddRemoveCyclesKeepTheSlotCountBounded() {
        const auto& g = fixture().weights->geometry();
        const fs::path dir = tmp() / "cycle";
        test::write_crafted_adapter(dir, test::crafted_llama_adapter(g, {"q_proj"}, 2, 4.0, 1));
        serving_engine engine(fixture().weights, fixture().tokenizer, open_raw_provider({dir}, g, 16u << 20),
                              options(60));
        const char* scale = std::getenv("LORAFLEET_STRESS_SCALE");
        const int cycles = std::max(1, int(20000 * (scale ? std::atof(scale) : 1.0)));
        watchdog guard("add/remove cycles", 600s);
        const auto t0 = std::chrono::steady_clock::now();
        int max_slot = 0;
        for (int i = 0; i < cycles; ++i) {
            const auto info = engine.add_adapter(dir, "c" + std::to_string(i % 3)).get();
            max_slot = std::max(max_slot, info.slot);
            if (i % 1000 == 0)
                QCOMPARE(int(complete(engine, info.name, 2).get().status), int(completion_status::finished));
            QVERIFY(engine.remove_adapter(info.name).get());
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        qInfo("%d add/remove cycles in %.2f s (%.0f us each)", cycles, s, 1e6 * s / cycles);
        QCOMPARE(max_slot, 1); // "cycle" holds slot 0; every add reuses slot 1
        QCOMPARE(engine.adapters().size(), std::size_t(1));
    }
};

QTEST_GUILESS_MAIN(TestServingEngineAdapters)
#include "test_serving_engine_adapters.moc"
