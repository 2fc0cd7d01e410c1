// serving_engine on the TinyStories-656K demo model, against serve::generate() as the reference: every
// request served in a continuously batched mix (submitted from several threads, with chunked prefill,
// adapters, a tight KV budget, a cache that holds one adapter at a time) must produce exactly the tokens
// and text generate() produces for it alone. Also: refusals at submit(), cancel freeing KV blocks, metrics
// counters equal to the results' sums, a failing adapter failing only its own requests, adapter removal,
// and shutdown with and without finishing in-flight requests.
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "engine/serve/adapters/raw_lora_delta.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/scheduling/step_planner.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;

namespace {

// ---- The model ------------------------------------------------------------------------------------------
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

std::vector<int> encode(const std::string& text) {
    return fixture().tokenizer->encode(text, true);
}

// ---- A test AdapterProvider over RawLoraDelta -------------------------------------------------------------
// Random LoRA factors on every module of every layer, from a seed; the same seed gives the same adapter.
void add_random_adapter(RawLoraDelta& delta, const io::model_geometry& g, int slot, std::uint64_t seed) {
    for (int l = 0; l < g.num_layers; ++l)
        for (int k = 0; k < module_kind_count; ++k) {
            const auto m = static_cast<module_kind>(k);
            const auto shape = *g.linear_shape(module_name(m));
            lora_module_weights w;
            w.rank = 4;
            w.scale = 1.0f;
            auto rng = random_stream::derive(seed, {std::uint64_t(l), std::uint64_t(k)});
            w.a.resize(std::size_t(w.rank * shape.d_in));
            w.b.resize(std::size_t(shape.d_out * w.rank));
            for (auto& v : w.a)
                v = float(rng.normal() * 0.3);
            for (auto& v : w.b)
                v = float(rng.normal() * 0.3);
            delta.set_module(slot, l, m, std::move(w));
        }
}

std::uint64_t seed_of(const std::string& name) {
    return stream_id(name);
}

// Serves adapters named by the test from RawLoraDelta. `resident` bounds how many slots prepare() makes
// available per step (like a cache that holds that many adapters); `broken` names an adapter whose
// "files" cannot be read. Records what the engine asked for and checks that apply() only ever sees slots
// that the last prepare() allowed.
class test_provider : public AdapterProvider {
public:
    test_provider(const io::model_geometry& g, std::vector<std::string> names, std::size_t resident = 1000,
                  std::string broken = {})
        : m_geometry(g), m_delta(g), m_resident(resident), m_broken(std::move(broken)) {
        for (const auto& n : names)
            add_named(n);
    }

    std::string_view mode() const override { return "raw"; }
    int find(std::string_view name) const override {
        for (const auto& a : m_infos)
            if (a.name == name) return a.slot;
        return -1;
    }
    std::vector<adapter_info> list() const override { return m_infos; }
    std::size_t prepare(std::span<const int> wanted) override {
        ++prepares;
        max_wanted = std::max(max_wanted, wanted.size());
        for (int s : wanted)
            if (!m_broken.empty() && s == find(m_broken))
                throw io_error(m_broken, "adapter files vanished (test)");
        const std::size_t n = std::min(wanted.size(), m_resident);
        m_allowed.assign(wanted.begin(), wanted.begin() + std::ptrdiff_t(n));
        return n;
    }
    std::unique_ptr<prepared_adapter> prepare_add(const fs::path& dir,
                                                  const std::string& name) const override {
        auto p = std::make_unique<prepared_adapter>();
        p->name = name;
        p->source = dir.string();
        return p;
    }
    adapter_info install(std::unique_ptr<prepared_adapter> p) override {
        if (find(p->name) >= 0) throw usage_error(p->name, "name taken");
        return add_named(p->name);
    }
    bool remove(std::string_view name) override {
        const int slot = find(name);
        if (slot < 0) return false;
        std::erase_if(m_infos, [&](const adapter_info& a) { return a.slot == slot; });
        return true;
    }
    adapter_memory_stats memory() const override {
        adapter_memory_stats s;
        s.resident_bytes = 1234 * m_infos.size();
        s.hits = std::uint64_t(prepares);
        s.resident_adapters = static_cast<int>(m_infos.size());
        return s;
    }
    void apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
               std::span<const int> token_adapter, worker_pool* pool) override {
        for (int s : token_adapter)
            if (s >= 0 && std::find(m_allowed.begin(), m_allowed.end(), s) == m_allowed.end()) ++violations;
        m_delta.apply(layer, m, x, y, n_tokens, token_adapter, pool);
    }

    // Written on the engine thread, read by the test after shutdown.
    std::atomic<int> violations{0};
    std::atomic<int> prepares{0};
    std::size_t max_wanted = 0;

private:
    adapter_info add_named(const std::string& name) {
        adapter_info a;
        a.name = name;
        a.slot = m_next_slot++;
        a.bytes = 1234;
        add_random_adapter(m_delta, m_geometry, a.slot, seed_of(name));
        m_infos.push_back(a);
        return a;
    }
    io::model_geometry m_geometry;
    RawLoraDelta m_delta;
    std::size_t m_resident;
    std::string m_broken;
    std::vector<adapter_info> m_infos;
    std::vector<int> m_allowed;
    int m_next_slot = 0;
};

// ---- The reference: generate() alone ----------------------------------------------------------------------
struct job {
    std::string adapter; // "" = base
    std::vector<int> prompt;
    generation_params params;
};

// generate() for one job on its own transformer, with the adapter (if any) at slot 0 of a fresh delta.
generation_result reference(const job& j) {
    transformer model(fixture().weights, 1);
    generation_params p = j.params;
    RawLoraDelta delta(fixture().weights->geometry());
    AdapterDelta* adapters = nullptr;
    if (!j.adapter.empty()) {
        add_random_adapter(delta, fixture().weights->geometry(), 0, seed_of(j.adapter));
        p.adapter = 0;
        adapters = &delta;
    }
    return generate(model, *fixture().tokenizer, j.prompt, p, {}, adapters);
}

struct outcome {
    completion_result result;
    std::string streamed; // on_text pieces, concatenated
};

// Submits a job; the returned future is set by on_done.
struct submitted {
    std::uint64_t id = 0;
    std::shared_future<outcome> done;
};

submitted submit(serving_engine& engine, const job& j) {
    auto streamed = std::make_shared<std::string>();
    auto promise = std::make_shared<std::promise<outcome>>();
    completion_request r;
    r.adapter = j.adapter;
    r.prompt = j.prompt;
    r.params = j.params;
    r.on_text = [streamed](std::string_view piece) { *streamed += piece; };
    r.on_done = [streamed, promise](const completion_result& res) { promise->set_value({res, *streamed}); };
    submitted s;
    s.done = promise->get_future().share();
    s.id = engine.submit(std::move(r));
    return s;
}

const char* texts[] = {"Once upon a time",
                       "The little dog",
                       "Tom and Lily went to the park. They saw a big",
                       "One day, a girl named Sue",
                       "The sun was",
                       "There was a red ball in the garden. The cat",
                       "Mom said",
                       "A bird flew over the tree and",
                       "Ben had a toy car",
                       "The old man smiled",
                       "It was a rainy day",
                       "The princess"};

// A varied set: greedy and sampled, different lengths, seeds and (for some) stop strings.
std::vector<job> varied_jobs(int n, const std::vector<std::string>& adapters = {""}) {
    std::vector<job> jobs;
    for (int i = 0; i < n; ++i) {
        job j;
        j.adapter = adapters[std::size_t(i) % adapters.size()];
        j.prompt = encode(texts[i % 12]);
        j.params.max_tokens = 3 + (i * 7) % 37;
        if (i % 2 == 1) {
            j.params.sampling.temperature = 0.7f + 0.1f * float(i % 4);
            j.params.sampling.top_k = (i % 3) * 20;
            j.params.sampling.top_p = i % 5 == 0 ? 0.9f : 1.0f;
        }
        j.params.sampling.seed = 1000 + std::uint64_t(i);
        if (i % 4 == 2) j.params.stop = {" the", "."};
        jobs.push_back(j);
    }
    return jobs;
}

void expect_equal_to_reference(const job& j, const outcome& o) {
    const generation_result want = reference(j);
    QCOMPARE(int(o.result.status), int(completion_status::finished));
    QCOMPARE(o.result.tokens, want.tokens);
    QCOMPARE(o.result.text, want.text);
    QCOMPARE(int(o.result.reason), int(want.reason));
    QCOMPARE(o.result.prompt_tokens, int(j.prompt.size()));
    QCOMPARE(o.streamed, o.result.text);
    QVERIFY(o.result.queue_s <= o.result.total_s && o.result.ttft_s <= o.result.total_s);
}

engine_options small_steps() {
    engine_options o;
    o.max_batch_tokens = 40;
    o.prefill_chunk = 5; // prompts are prefilled in several chunks, mixed with decode tokens
    o.threads = 1;
    return o;
}

std::uint64_t kv_bytes_for_blocks(int blocks) {
    return kv_cache::block_bytes(fixture().weights->geometry(), 16) * std::uint64_t(blocks);
}

} // namespace

class TestServingEngine : public QObject {
    Q_OBJECT
private slots:
    void plannerAdmitsInFifoOrderAndRespectsTheBudget() {
        // Admission: the head that does not fit blocks everyone behind it (no overtaking).
        const std::vector<int> need{2, 5, 1};
        QCOMPARE(admit_count(need, 6, 10), 1);
        QCOMPARE(admit_count(need, 7, 10), 2);
        QCOMPARE(admit_count(need, 8, 10), 3);
        QCOMPARE(admit_count(need, 8, 2), 2);
        // Planning: decode tokens first, then prefill chunks of at most prefill_chunk, within the budget.
        const std::vector<plan_candidate> c{{3, 10}, {-1, 0}, {5, 2}, {3, 0}, {7, 30}};
        const auto plan = plan_step(c, 9, 4);
        std::vector<std::pair<int, int>> got;
        for (const auto& p : plan)
            got.emplace_back(p.index, p.tokens);
        const std::vector<std::pair<int, int>> want{{0, 4}, {1, 1}, {2, 2}, {3, 1}, {4, 1}};
        QCOMPARE(got, want);
        QCOMPARE(plan_slots(c, plan), (std::vector<int>{3, 5, 7}));
        const auto tight = plan_step(c, 1, 4); // only the oldest decode token fits
        QCOMPARE(tight.size(), std::size_t(1));
        QCOMPARE(tight[0].index, 1);
    }

    void concurrentRequestsEqualGenerateAlone() {
        serving_engine engine(fixture().weights, fixture().tokenizer, nullptr, small_steps());
        QCOMPARE(engine.adapter_mode(), std::string_view("base"));
        const auto jobs = varied_jobs(12);
        std::vector<submitted> subs(jobs.size());
        std::atomic<bool> go{false};
        std::vector<std::thread> threads;
        for (int t = 0; t < 3; ++t)
            threads.emplace_back([&, t] {
                while (!go.load())
                    std::this_thread::yield();
                for (std::size_t i = std::size_t(t); i < jobs.size(); i += 3)
                    subs[i] = submit(engine, jobs[i]);
            });
        go = true;
        for (auto& th : threads)
            th.join();
        for (std::size_t i = 0; i < jobs.size(); ++i)
            expect_equal_to_reference(jobs[i], subs[i].done.get());
        const auto m = engine.metrics();
        QVERIFY2(m.peak_running >= 2, "requests were never batched together");
        // Beyond the model's context (512): refused at submit, whatever the KV budget.
        job too_long = jobs[0];
        too_long.params.max_tokens = fixture().weights->max_context() - int(too_long.prompt.size()) + 1;
        try {
            submit(engine, too_long);
            QFAIL("a request beyond the context was accepted");
        } catch (const usage_error& e) {
            QVERIFY2(std::string(e.what()).find("context") != std::string::npos, e.what());
        }
        too_long.params.max_tokens -= 1; // exactly the context: fine
        QCOMPARE(int(submit(engine, too_long).done.get().result.status), int(completion_status::finished));
        engine.shutdown(true);
    }

    void metricsCountersEqualTheResults() {
        serving_engine engine(fixture().weights, fixture().tokenizer, nullptr, small_steps());
        const auto jobs = varied_jobs(9);
        std::vector<submitted> subs;
        for (const auto& j : jobs)
            subs.push_back(submit(engine, j));
        std::uint64_t prompt = 0, completion = 0;
        for (auto& s : subs) {
            const auto o = s.done.get();
            prompt += std::uint64_t(o.result.prompt_tokens);
            completion += o.result.tokens.size();
        }
        const auto m = engine.metrics();
        QCOMPARE(m.requests_submitted, std::uint64_t(jobs.size()));
        QCOMPARE(m.requests_completed, std::uint64_t(jobs.size()));
        QCOMPARE(m.requests_failed + m.requests_cancelled, std::uint64_t(0));
        QCOMPARE(m.prompt_tokens, prompt);
        QCOMPARE(m.completion_tokens, completion);
        QCOMPARE(m.end_to_end.count, std::uint64_t(jobs.size()));
        QCOMPARE(m.ttft.count, std::uint64_t(jobs.size()));
        QVERIFY(m.end_to_end.p50 > 0 && m.end_to_end.p50 <= m.end_to_end.p99);
        QVERIFY(m.ttft.p50 <= m.end_to_end.p99);
        QVERIFY(m.decode_tokens_per_s > 0 && m.prefill_tokens_per_s > 0 && m.requests_per_s > 0);
        QCOMPARE(m.queue_depth, 0);
        QCOMPARE(m.running, 0);
        QCOMPARE(m.per_adapter.size(), std::size_t(1));
        QCOMPARE(m.per_adapter[0].requests, std::uint64_t(jobs.size()));
        QCOMPARE(m.per_adapter[0].completion_tokens, completion);
        QVERIFY(m.memory.weights > 0 && m.memory.kv_cache_reserved > 0 && m.memory.rss > 0);
        QCOMPARE(m.memory.kv_cache_used, std::uint64_t(0)); // every block given back
        QVERIFY(m.memory.peak_rss >= m.memory.rss);
        // Prefill and decode tokens per step add up to what was processed: prompts plus fed-back tokens.
        QVERIFY(m.steps > 0);
    }

    void adaptersMixedInOneBatchEqualEachAdapterAlone() {
        const auto& g = fixture().weights->geometry();
        auto provider =
            std::make_unique<test_provider>(g, std::vector<std::string>{"alpha", "beta", "gamma"});
        auto* prov = provider.get();
        serving_engine engine(fixture().weights, fixture().tokenizer, std::move(provider), small_steps());
        QCOMPARE(engine.adapter_mode(), std::string_view("raw"));
        QCOMPARE(engine.adapters().size(), std::size_t(3));
        const auto jobs = varied_jobs(10, {"alpha", "", "beta", "gamma"});
        std::vector<submitted> subs;
        for (const auto& j : jobs)
            subs.push_back(submit(engine, j));
        for (std::size_t i = 0; i < jobs.size(); ++i)
            expect_equal_to_reference(jobs[i], subs[i].done.get());
        engine.shutdown(true);
        QCOMPARE(prov->violations.load(), 0);
        QVERIFY(prov->max_wanted >= 2); // adapters really shared steps
        const auto m = engine.metrics();
        QCOMPARE(m.per_adapter.size(), std::size_t(4));
        std::map<std::string, std::uint64_t> per_name;
        for (const job& j : jobs)
            ++per_name[j.adapter];
        for (std::size_t i = 0; i < m.per_adapter.size(); ++i) {
            const auto& a = m.per_adapter[i];
            QCOMPARE(a.requests, per_name[a.name]);
            QVERIFY(a.p50_s > 0 && a.p50_s <= a.p99_s);
            if (i > 0) QVERIFY(m.per_adapter[i - 1].requests >= a.requests); // busiest first
        }
        QCOMPARE(m.adapter_cache_hits, std::uint64_t(prov->prepares.load()));
        // The adapters change the output (otherwise the comparison above would prove little).
        int changed = 0, adapted = 0;
        for (const job& j : jobs) {
            if (j.adapter.empty()) continue;
            ++adapted;
            job base = j;
            base.adapter.clear();
            changed += reference(base).tokens != reference(j).tokens;
        }
        QVERIFY2(changed * 2 > adapted, qPrintable(QString("%1 of %2 changed").arg(changed).arg(adapted)));
    }

    void aTightKvBudgetQueuesRequestsAndRefusesImpossibleOnes() {
        engine_options o = small_steps();
        // Each job below needs 2 blocks of 16 positions (prompt + 19 <= 32); 4 blocks hold 2 at a time.
        o.kv_cache_bytes = kv_bytes_for_blocks(5) - 1;
        serving_engine engine(fixture().weights, fixture().tokenizer, nullptr, o);
        auto jobs = varied_jobs(6);
        for (auto& j : jobs) {
            j.params.max_tokens = 20;
            j.params.stop.clear();
            j.params.stop_at_eos = false; // every request runs its full length
        }
        std::vector<submitted> subs;
        for (const auto& j : jobs)
            subs.push_back(submit(engine, j));
        for (std::size_t i = 0; i < jobs.size(); ++i)
            expect_equal_to_reference(jobs[i], subs[i].done.get());
        const auto m = engine.metrics();
        QCOMPARE(m.peak_running, 2);
        QCOMPARE(m.requests_completed, std::uint64_t(6));

        // 12 prompt tokens + 60 - 1 = 71 positions = 5 blocks: never fits.
        job big;
        big.prompt = encode(texts[2]);
        big.params.max_tokens = 60;
        QVERIFY(int(big.prompt.size()) + 59 > 4 * 16);
        QVERIFY_THROWS_EXCEPTION(usage_error, submit(engine, big));
        job unknown = jobs[0];
        unknown.adapter = "nobody";
        QVERIFY_THROWS_EXCEPTION(usage_error, submit(engine, unknown));
        job empty = jobs[0];
        empty.prompt.clear();
        QVERIFY_THROWS_EXCEPTION(usage_error, submit(engine, empty));
        job bad_sampling = jobs[0];
        bad_sampling.params.sampling.top_p = 0;
        QVERIFY_THROWS_EXCEPTION(usage_error, submit(engine, bad_sampling));
        job bad_token = jobs[0];
        bad_token.prompt.push_back(fixture().weights->geometry().vocab_size);
        QVERIFY_THROWS_EXCEPTION(usage_error, submit(engine, bad_token));
        QCOMPARE(engine.metrics().requests_submitted, std::uint64_t(6)); // refusals are not counted
    }

    void cancelFreesTheBlocksOfARunningRequest() {
        engine_options o = small_steps();
        o.kv_cache_bytes = kv_bytes_for_blocks(14); // one 200-token request at a time
        serving_engine engine(fixture().weights, fixture().tokenizer, nullptr, o);
        job longj;
        longj.prompt = encode(texts[0]);
        longj.params.max_tokens = 200;
        longj.params.stop_at_eos = false;
        // Cancel from inside the stream once some text has come out: the request is surely running.
        std::promise<void> started;
        std::once_flag once;
        completion_request r;
        r.prompt = longj.prompt;
        r.params = longj.params;
        r.on_text = [&](std::string_view) { std::call_once(once, [&] { started.set_value(); }); };
        std::promise<completion_result> done;
        r.on_done = [&](const completion_result& res) { done.set_value(res); };
        const auto id = engine.submit(std::move(r));
        // The second request cannot start before the first one's blocks are free.
        const auto second = submit(engine, longj);
        started.get_future().wait();
        QVERIFY(engine.cancel(id));
        const auto res = done.get_future().get();
        QCOMPARE(int(res.status), int(completion_status::cancelled));
        QVERIFY(res.tokens.size() < 200);
        expect_equal_to_reference(longj, second.done.get());
        QVERIFY(!engine.cancel(id));        // already over
        QVERIFY(!engine.cancel(second.id)); // finished
        const auto m = engine.metrics();
        QCOMPARE(m.requests_cancelled, std::uint64_t(1));
        QCOMPARE(m.peak_running, 1);
        QCOMPARE(m.memory.kv_cache_used, std::uint64_t(0));

        // A queued request can be cancelled too: it never produces a token.
        std::promise<void> gate_started;
        std::once_flag once2;
        completion_request blocker;
        blocker.prompt = longj.prompt;
        blocker.params = longj.params;
        blocker.on_text = [&](std::string_view) { std::call_once(once2, [&] { gate_started.set_value(); }); };
        const auto blocker_id = engine.submit(std::move(blocker));
        gate_started.get_future().wait();
        const auto queued = submit(engine, longj);
        QVERIFY(engine.cancel(queued.id));
        const auto q = queued.done.get();
        QCOMPARE(int(q.result.status), int(completion_status::cancelled));
        QVERIFY(q.result.tokens.empty());
        QVERIFY(engine.cancel(blocker_id));
        engine.shutdown(false); // before the promises its callbacks use go out of scope
    }

    void aProviderThatHoldsOneAdapterStillServesBoth() {
        const auto& g = fixture().weights->geometry();
        auto provider = std::make_unique<test_provider>(g, std::vector<std::string>{"alpha", "beta"}, 1);
        auto* prov = provider.get();
        serving_engine engine(fixture().weights, fixture().tokenizer, std::move(provider), small_steps());
        const auto jobs = varied_jobs(8, {"alpha", "beta"});
        std::vector<submitted> subs;
        for (const auto& j : jobs)
            subs.push_back(submit(engine, j));
        for (std::size_t i = 0; i < jobs.size(); ++i)
            expect_equal_to_reference(jobs[i], subs[i].done.get());
        engine.shutdown(true);
        QVERIFY(prov->max_wanted >= 2); // both were wanted at once and only one was granted
        QCOMPARE(prov->violations.load(), 0);
    }

    void aFailingAdapterFailsOnlyItsOwnRequests() {
        const auto& g = fixture().weights->geometry();
        auto provider = std::make_unique<test_provider>(
            g, std::vector<std::string>{"alpha", "broken", "gamma"}, 1000, "broken");
        serving_engine engine(fixture().weights, fixture().tokenizer, std::move(provider), small_steps());
        const auto jobs = varied_jobs(9, {"alpha", "broken", "gamma"});
        std::vector<submitted> subs;
        for (const auto& j : jobs)
            subs.push_back(submit(engine, j));
        for (std::size_t i = 0; i < jobs.size(); ++i) {
            if (jobs[i].adapter == "broken") {
                const auto o = subs[i].done.get();
                QCOMPARE(int(o.result.status), int(completion_status::failed));
                QVERIFY2(o.result.error.find("vanished") != std::string::npos, o.result.error.c_str());
            } else {
                expect_equal_to_reference(jobs[i], subs[i].done.get());
            }
        }
        QCOMPARE(engine.metrics().requests_failed, std::uint64_t(3));
    }

    void removingAnAdapterCancelsItsRequests() {
        const auto& g = fixture().weights->geometry();
        auto provider = std::make_unique<test_provider>(g, std::vector<std::string>{"alpha", "beta"});
        serving_engine engine(fixture().weights, fixture().tokenizer, std::move(provider), small_steps());
        job j;
        j.adapter = "alpha";
        j.prompt = encode(texts[1]);
        j.params.max_tokens = 400;
        j.params.stop_at_eos = false;
        const auto victim = submit(engine, j);
        QVERIFY(engine.remove_adapter("alpha").get());
        QCOMPARE(int(victim.done.get().result.status), int(completion_status::cancelled));
        QVERIFY(!engine.remove_adapter("alpha").get());
        QCOMPARE(engine.adapters().size(), std::size_t(1));
        QVERIFY_THROWS_EXCEPTION(usage_error, submit(engine, j));
        // Adding under a new name: requests to it equal generate() with that adapter.
        const auto info = engine.add_adapter("/nowhere", "delta").get();
        QCOMPARE(info.name, std::string("delta"));
        QVERIFY_THROWS_EXCEPTION(usage_error, engine.add_adapter("/nowhere", "beta").get());
        job k = varied_jobs(2, {"delta"})[1];
        expect_equal_to_reference(k, submit(engine, k).done.get());
    }

    void shutdownFinishesOrCancelsInFlightRequests() {
        const auto jobs = varied_jobs(4);
        std::vector<submitted> subs;
        {
            serving_engine engine(fixture().weights, fixture().tokenizer, nullptr, small_steps());
            for (const auto& j : jobs)
                subs.push_back(submit(engine, j));
            engine.shutdown(true);
            for (std::size_t i = 0; i < jobs.size(); ++i)
                expect_equal_to_reference(jobs[i], subs[i].done.get());
            QVERIFY_THROWS_EXCEPTION(usage_error, submit(engine, jobs[0]));
            QVERIFY_THROWS_EXCEPTION(usage_error, engine.add_adapter("/x", "y").get());
            engine.shutdown(false); // idempotent
        }
        subs.clear();
        {
            serving_engine engine(fixture().weights, fixture().tokenizer, nullptr, small_steps());
            job longj = jobs[0];
            longj.params.max_tokens = 400;
            longj.params.stop_at_eos = false;
            for (int i = 0; i < 3; ++i)
                subs.push_back(submit(engine, longj));
            // The destructor cancels whatever is still running; every request still gets its on_done.
        }
        for (auto& s : subs) {
            QVERIFY(s.done.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
            const auto st = s.done.get().result.status;
            QVERIFY(st == completion_status::cancelled || st == completion_status::finished);
        }
    }
};

QTEST_GUILESS_MAIN(TestServingEngine)
#include "test_serving_engine.moc"
