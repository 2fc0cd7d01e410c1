// Tests of PrefetchingModuleSource and of its use by the fleet driver. The reference is always the
// unwrapped source: batches must be byte-identical in any access order, compress_fleet must give the
// same partition and bit-identical bases / cores with and without prefetching, errors must surface at
// the load() that asks for the failing module, and the overlap is checked by the ORDER of events
// (the next module's load has started before load(m) returns; a load blocked on a gate runs while the
// caller holds module m), never by timings.
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/prefetching_module_source.hpp"
#include "engine/core/error.hpp"
#include "tests/support/planted_fleet.hpp"
#include "tests/support/same_bits.hpp"

#include <QtTest/QtTest>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

using namespace lorafleet;
using namespace lorafleet::compress;
using lorafleet::test::make_planted_fleet;
using lorafleet::test::planted_fleet_options;
using lorafleet::test::same_partition;

namespace {

using test::same_bits;

// A thread-safe log of what happened, in order.
struct event_log {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::string> events;
    void add(std::string e) {
        {
            std::lock_guard lk(mutex);
            events.push_back(std::move(e));
        }
        cv.notify_all();
    }
    // Waits until `e` has been logged `times` times; false after 10 s (an implementation that does not
    // prefetch never logs it: the bound only turns that into a failure instead of a hang).
    bool wait_for(const std::string& e, int times = 1) {
        std::unique_lock lk(mutex);
        return cv.wait_for(lk, std::chrono::seconds(10),
                           [&] { return std::count(events.begin(), events.end(), e) >= times; });
    }
    std::vector<std::string> snapshot() {
        std::lock_guard lk(mutex);
        return events;
    }
    // Position of `e` in the log (events.size() when absent).
    std::size_t index(const std::string& e) {
        std::lock_guard lk(mutex);
        return static_cast<std::size_t>(std::find(events.begin(), events.end(), e) - events.begin());
    }
};

// Wraps a source: logs the start and end of each load, can sleep in load, can throw for one module,
// can block the load of one module until a gate opens, counts loads and the batches alive at once, and
// checks that load() is never entered by two threads at the same time.
class InstrumentedSource final : public ModuleSource {
public:
    explicit InstrumentedSource(ModuleSource& inner, event_log* log = nullptr) : m_inner(inner), m_log(log) {}

    std::size_t adapter_count() const override { return m_inner.adapter_count(); }
    std::string adapter_name(std::size_t a) const override { return m_inner.adapter_name(a); }
    std::size_t module_count() const override { return m_inner.module_count(); }
    module_shape module(std::size_t m) const override { return m_inner.module(m); }

    module_batch load(std::size_t m) override {
        if (m_inside.exchange(true)) concurrent = true;
        struct leave {
            std::atomic<bool>& f;
            ~leave() { f = false; }
        } guard{m_inside};
        if (m_log) m_log->add("start " + std::to_string(m));
        ++loads;
        if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms));
        if (gated && m == *gated) {
            std::unique_lock lk(m_gate_mutex);
            m_gate_cv.wait(lk, [&] { return m_gate_open; });
        }
        if (throw_for && m == *throw_for) {
            if (m_log) m_log->add("throw " + std::to_string(m));
            throw io_error("module " + std::to_string(m), "planted read failure");
        }
        module_batch b = m_inner.load(m);
        const int now = ++*m_live;
        int seen = max_live.load();
        while (now > seen && !max_live.compare_exchange_weak(seen, now)) {
        }
        auto live = m_live;
        auto keep = b.storage;
        b.storage = std::shared_ptr<const void>(new int(0), [live, keep](const int* p) {
            --*live;
            delete p;
        });
        if (m_log) m_log->add("end " + std::to_string(m));
        return b;
    }

    void open_gate() {
        {
            std::lock_guard lk(m_gate_mutex);
            m_gate_open = true;
        }
        m_gate_cv.notify_all();
    }

    std::atomic<int> loads{0};
    std::atomic<int> max_live{0};
    std::atomic<bool> concurrent{false};
    int sleep_ms = 0;
    std::optional<std::size_t> throw_for;
    std::optional<std::size_t> gated;

private:
    ModuleSource& m_inner;
    event_log* m_log;
    std::atomic<bool> m_inside{false};
    std::shared_ptr<std::atomic<int>> m_live = std::make_shared<std::atomic<int>>(0);
    std::mutex m_gate_mutex;
    std::condition_variable m_gate_cv;
    bool m_gate_open = false;
};

// Byte-for-byte equality of two batches (names, shapes, adapter order, ranks, factor bytes).
bool same_batch(const module_batch& x, const module_batch& y) {
    if (x.name != y.name || x.d_out != y.d_out || x.d_in != y.d_in || x.size() != y.size()) return false;
    for (std::size_t p = 0; p < x.size(); ++p) {
        const auto &a = x.adapters[p], &b = y.adapters[p];
        if (a.adapter != b.adapter || a.rank != b.rank || a.a.size() != b.a.size() ||
            a.b.size() != b.b.size())
            return false;
        if (std::memcmp(a.a.data(), b.a.data(), a.a.size_bytes()) != 0) return false;
        if (std::memcmp(a.b.data(), b.b.data(), a.b.size_bytes()) != 0) return false;
    }
    return true;
}

planted_fleet_options ragged_fleet() {
    planted_fleet_options po;
    po.modules = {{"layers.0.q_proj", 48, 40}, {"layers.0.v_proj", 24, 40}, {"layers.1.q_proj", 48, 40},
                  {"layers.1.v_proj", 24, 40}, {"layers.2.q_proj", 32, 40}, {"layers.2.v_proj", 24, 32}};
    po.adapter_ranks = {4, 6, 5};
    po.scales = {1.0, 0.5, 2.0};
    po.noise = 0.05;
    po.missing_probability = 0.2;
    po.seed = 11;
    return po;
}

// A CpuBackend that records the look-ahead hints it gets (stage()) and the batches the driver computes
// on (norms2 / fit / residuals), by the address of the first adapter's lora_A data, which identifies a
// loaded module (the source's storage of that module).
class StageRecordingBackend final : public CompressBackend {
public:
    std::string name() const override { return "stage-recording"; }
    void stage(const module_batch& batch) noexcept override {
        std::lock_guard lk(mutex);
        events.push_back({true, key(batch), std::this_thread::get_id()});
    }
    std::vector<double> norms2(const module_batch& b) override {
        used(b);
        return cpu.norms2(b);
    }
    jd_fit fit_jd_full(const module_batch& b, std::span<const std::size_t> m, const jd_options& o,
                       const jd_basis* w) override {
        used(b);
        return cpu.fit_jd_full(b, m, o, w);
    }
    jd_fit fit_jd_diag(const module_batch& b, std::span<const std::size_t> m, const jd_options& o,
                       const jd_basis* w) override {
        used(b);
        return cpu.fit_jd_diag(b, m, o, w);
    }
    std::vector<matrix> project(const module_batch& b, const jd_basis& basis,
                                std::span<const std::size_t> m) override {
        used(b);
        return cpu.project(b, basis, m);
    }
    dmatrix residuals(const module_batch& b, std::span<const jd_basis* const> bases,
                      std::span<const std::size_t> a) override {
        used(b);
        return cpu.residuals(b, bases, a);
    }
    std::vector<double> errors(const module_batch& b, const jd_basis& basis, std::span<const std::size_t> m,
                               std::span<const matrix> cores) override {
        used(b);
        return cpu.errors(b, basis, m, cores);
    }

    struct event {
        bool stage = false; // else: the first use of a newly loaded batch
        const float* key = nullptr;
        std::thread::id thread;
    };
    std::mutex mutex;
    std::vector<event> events;

private:
    static const float* key(const module_batch& b) {
        return b.adapters.empty() ? nullptr : b.adapters[0].a.data();
    }
    void used(const module_batch& b) {
        std::lock_guard lk(mutex);
        if (m_last_use != key(b)) events.push_back({false, key(b), std::this_thread::get_id()});
        m_last_use = key(b);
    }
    const float* m_last_use = nullptr;
    CpuBackend cpu{cpu_backend_options{2}};
};

// Compression of a planted fleet at its planted rank and cluster count, prefetching.
compress_options prefetching_options(const planted_fleet_options& po) {
    compress_options o;
    o.jd.rank = po.subspace_rank;
    o.clusters = po.groups;
    o.prefetch_modules = true;
    return o;
}

} // namespace

class TestCompressPrefetch : public QObject {
    Q_OBJECT

    CpuBackend backend{cpu_backend_options{2}};

private slots:
    void batches_are_identical_in_any_order() {
        const auto po = ragged_fleet();
        auto fleet = make_planted_fleet(po);
        auto reference = make_planted_fleet(po); // same seed: an independent copy of the same data
        const std::size_t nm = po.modules.size();
        InstrumentedSource inst(*fleet.source);
        PrefetchingModuleSource pre(inst);
        QCOMPARE(pre.module_count(), nm);
        QCOMPARE(pre.adapter_count(), fleet.source->adapter_count());
        QCOMPARE(pre.module(3).name, fleet.source->module(3).name);

        std::vector<std::size_t> order;
        for (int pass = 0; pass < 2; ++pass) // sequential, wrapping into a second pass
            for (std::size_t m = 0; m < nm; ++m)
                order.push_back(m);
        for (int i = 0; i < 3; ++i) // the same module again and again
            order.push_back(2);
        random_stream g(7);
        for (int i = 0; i < 40; ++i) // random
            order.push_back(static_cast<std::size_t>(g.below(nm)));
        for (std::size_t m = nm; m-- > 0;) // backwards: every prediction wrong
            order.push_back(m);

        for (const auto m : order) {
            const module_batch got = pre.load(m);
            const module_batch want = reference.source->load(m);
            QVERIFY2(same_batch(got, want), qPrintable("module " + QString::number(m)));
        }
        // The sequential part hit every prefetch after the first load: 2 nm - 1 hits at least.
        QVERIFY(pre.prefetch_hits() >= 2 * nm - 1);
        QVERIFY(pre.prefetch_hits() < order.size());
        QVERIFY(!inst.concurrent);
        QVERIFY(inst.max_live <= 2); // the caller's module plus the prefetched one
    }

    void hints_direct_the_prefetch() {
        const auto po = ragged_fleet();
        auto fleet = make_planted_fleet(po);
        auto reference = make_planted_fleet(po);
        InstrumentedSource inst(*fleet.source);
        std::optional<PrefetchingModuleSource> holder(std::in_place, inst);
        auto& pre = *holder;
        const std::vector<std::size_t> sample = {1, 4, 2, 5};
        for (std::size_t j = 0; j < sample.size(); ++j) {
            pre.expect(j + 1 < sample.size() ? sample[j + 1] : 0);
            const module_batch got = pre.load(sample[j]);
            QVERIFY(same_batch(got, reference.source->load(sample[j])));
        }
        QCOMPARE(pre.prefetch_hits(), sample.size() - 1); // every module after the first was prefetched
        const module_batch first = pre.load(0);           // the last hint
        QCOMPARE(pre.prefetch_hits(), sample.size());
        QVERIFY(same_batch(first, reference.source->load(0)));
        // Every hinted module was loaded once, in the background: 4, 2, 5, 0 and now 1 (the default m + 1).
        QCOMPARE(pre.prefetches_started(), sample.size() + 1);
        // An out-of-range hint means no prefetch at all.
        pre.expect(999);
        (void)pre.load(1); // the prefetched 1
        QCOMPARE(pre.prefetch_hits(), sample.size() + 1);
        QCOMPARE(pre.prefetches_started(), sample.size() + 1);
        // The wrapped source saw exactly those loads plus the first, direct one (counted once the
        // background thread is idle: the destructor joins it).
        holder.reset();
        QCOMPARE(inst.loads.load(), static_cast<int>(sample.size()) + 2);
    }

    void errors_surface_at_the_asking_load() {
        const auto po = ragged_fleet();
        auto fleet = make_planted_fleet(po);
        auto reference = make_planted_fleet(po);
        const std::size_t nm = po.modules.size();
        InstrumentedSource inst(*fleet.source);
        inst.throw_for = 3;
        {
            PrefetchingModuleSource pre(inst);
            QVERIFY(same_batch(pre.load(2), reference.source->load(2))); // module 3 fails in the background
            try {
                (void)pre.load(3);
                QFAIL("load(3) did not throw");
            } catch (const io_error& e) {
                QVERIFY(std::string(e.what()).find("planted read failure") != std::string::npos);
                QVERIFY(std::string(e.what()).find("module 3") != std::string::npos);
            }
            // The next loads work (4 was prefetched after the failure).
            for (std::size_t m = 4; m < nm; ++m)
                QVERIFY(same_batch(pre.load(m), reference.source->load(m)));
            QCOMPARE(pre.prefetch_hits(), std::size_t(nm - 3)); // 3 (as an error), 4, 5
            // Asked directly, not prefetched: the error comes from that call, and again on a retry.
            (void)pre.load(0);
            QVERIFY_THROWS_EXCEPTION(io_error, pre.load(3));
            QVERIFY_THROWS_EXCEPTION(io_error, pre.load(3));
            // A prefetched error nobody asks for is dropped with its batch.
            QVERIFY(same_batch(pre.load(2), reference.source->load(2)));
            QVERIFY(same_batch(pre.load(0), reference.source->load(0)));
            pre.expect(3);
            (void)pre.load(1); // prefetches the failing 3 ...
        }                      // ... and the destructor discards its error without throwing
        QVERIFY(!inst.concurrent);
    }

    void the_next_load_runs_while_the_caller_holds_the_current_module() {
        const auto po = ragged_fleet();
        auto fleet = make_planted_fleet(po);
        auto reference = make_planted_fleet(po);
        event_log log;
        InstrumentedSource inst(*fleet.source, &log);
        inst.gated = 1;
        PrefetchingModuleSource pre(inst);
        const module_batch b0 = pre.load(0);
        log.add("returned 0");
        // Without asking for module 1, its load starts (and blocks on the gate) while we hold module 0.
        QVERIFY(log.wait_for("start 1"));
        QCOMPARE(log.index("end 1"), log.snapshot().size());
        log.add("compute 0");
        inst.open_gate();
        log.add("asking 1");
        const module_batch b1 = pre.load(1);
        log.add("returned 1");
        QVERIFY(log.index("end 0") < log.index("returned 0"));
        QVERIFY(log.index("start 1") < log.index("compute 0"));
        QVERIFY(log.index("compute 0") < log.index("end 1"));
        QVERIFY(log.index("end 1") < log.index("returned 1"));
        QVERIFY(same_batch(b0, reference.source->load(0)));
        QVERIFY(same_batch(b1, reference.source->load(1)));
        QCOMPARE(pre.prefetch_hits(), std::size_t(1));
    }

    void slow_loads_overlap_compute_in_a_streaming_loop() {
        const auto po = ragged_fleet();
        auto fleet = make_planted_fleet(po);
        const std::size_t nm = po.modules.size();
        event_log log;
        InstrumentedSource inst(*fleet.source, &log);
        inst.sleep_ms = 20;
        const auto t0 = std::chrono::steady_clock::now();
        {
            PrefetchingModuleSource pre(inst);
            for (std::size_t m = 0; m < nm; ++m) {
                log.add("asking " + std::to_string(m));
                const module_batch b = pre.load(m);
                // "Compute": 20 ms, during which the next module's load must have started (the last one
                // wraps to module 0 of a next pass, its second start).
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                const auto next = (m + 1) % nm;
                QVERIFY2(log.wait_for("start " + std::to_string(next), next == 0 ? 2 : 1),
                         qPrintable("module " + QString::number(next) + " did not start during compute"));
                log.add("computed " + std::to_string(m));
            }
        }
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        // Every module after the first started loading before the caller asked for it.
        for (std::size_t m = 1; m < nm; ++m)
            QVERIFY(log.index("start " + std::to_string(m)) < log.index("asking " + std::to_string(m)));
        QVERIFY(!inst.concurrent);
        // For the record only (speed targets belong in benchmarks): serial would be ~ 2 * nm * 20 ms.
        qInfo("prefetched loop: %.0f ms for %zu modules (load 20 ms + compute 20 ms each)", wall * 1e3, nm);
    }

    void the_listener_sees_each_background_batch_before_it_is_handed_out() {
        const auto po = ragged_fleet();
        auto fleet = make_planted_fleet(po);
        auto reference = make_planted_fleet(po);
        event_log log;
        InstrumentedSource inst(*fleet.source, &log);
        std::mutex mutex;
        std::vector<std::pair<std::string, const float*>> heard;
        std::vector<std::thread::id> threads;
        std::optional<PrefetchingModuleSource> holder(std::in_place, inst);
        auto& pre = *holder;
        pre.on_prefetched([&](const module_batch& b) {
            {
                std::lock_guard lk(mutex);
                heard.emplace_back(b.name, b.adapters.at(0).a.data());
                threads.push_back(std::this_thread::get_id());
            }
            log.add("heard " + b.name);
            if (b.name == po.modules[2].name) throw std::runtime_error("a failing hint");
        });
        std::vector<module_batch> got;
        for (const std::size_t m : {0, 1, 2, 3, 5}) // 4 is a wrong guess (prefetched, never taken)
            got.push_back(pre.load(m));
        holder.reset(); // joins the prefetch of 0 (after 5) that load(5) started
        std::lock_guard lk(mutex);
        // Module 0 was loaded on the caller's thread: no hint. 1, 2, 3, 4 (the guess after 3) and 0 (the
        // guess after 5) were prefetched and heard; 5 was loaded directly after the wrong guess.
        const std::vector<std::size_t> expected = {1, 2, 3, 4, 0};
        QCOMPARE(heard.size(), expected.size());
        for (std::size_t i = 0; i < expected.size(); ++i) {
            QCOMPARE(QString::fromStdString(heard[i].first),
                     QString::fromStdString(po.modules[expected[i]].name));
            QVERIFY(threads[i] != std::this_thread::get_id());
        }
        // The listener saw the very storage that load() handed out (a device upload keyed on it is reused).
        for (std::size_t i = 0; i < 3; ++i)
            QCOMPARE(got[i + 1].adapters.at(0).a.data(), heard[i].second);
        // ... before load() returned it: heard m precedes the end of the following module's wait.
        QVERIFY(log.index("heard " + po.modules[1].name) < log.index("start 2"));
        // A throwing listener does not spoil the batch.
        QVERIFY(same_batch(got[2], reference.source->load(2)));
        QVERIFY(same_batch(got[4], reference.source->load(5)));
    }

    void the_driver_stages_each_next_module_from_the_prefetch_thread() {
        const auto po = ragged_fleet();
        auto fleet = make_planted_fleet(po);
        compress_options o = prefetching_options(po);
        StageRecordingBackend rec;
        const auto result = compress_fleet(*fleet.source, rec, o);
        QVERIFY(same_partition(result.assignment, fleet.labels));
        std::lock_guard lk(rec.mutex);
        // Every loaded batch after the very first was staged (the same storage) before its first use: at
        // each first use of a module's storage, more stages of it than earlier (staged) first uses.
        // (The in-memory source hands out the same storage for a module on every pass.)
        std::map<const float*, int> stages, uses;
        int first_uses = 0;
        for (const auto& e : rec.events) {
            qInfo("%s %p", e.stage ? "stage" : "use", (const void*)e.key);
            if (e.stage) {
                ++stages[e.key];
                QVERIFY(e.thread != std::this_thread::get_id());
                continue;
            }
            QCOMPARE(e.thread, std::this_thread::get_id());
            if (first_uses++ == 0) continue; // loaded before any prefetch
            QVERIFY2(stages[e.key] > uses[e.key], qPrintable("first use " + QString::number(first_uses)));
            ++uses[e.key];
        }
        QVERIFY(first_uses >= 2 * int(po.modules.size())); // at least two passes
        // Without prefetching there is no look-ahead.
        o.prefetch_modules = false;
        StageRecordingBackend plain;
        (void)compress_fleet(*fleet.source, plain, o);
        QVERIFY(
            std::none_of(plain.events.begin(), plain.events.end(), [](const auto& e) { return e.stage; }));
    }

    void compress_fleet_is_identical_with_and_without_prefetch() {
        const auto po = ragged_fleet();
        for (const int clusters : {3, 0}) { // given k (the planted one), automatic k
            auto fleet = make_planted_fleet(po);
            compress_options o;
            o.jd.rank = po.subspace_rank;
            o.clusters = clusters;
            o.feature_modules = 3;
            o.target_error = 0.05; // automatic k must search past k = 1
            o.prefetch_modules = false;
            InstrumentedSource plain_inst(*fleet.source);
            const auto plain = compress_fleet(plain_inst, backend, o);
            QCOMPARE(plain_inst.max_live.load(), 1);
            o.prefetch_modules = true;
            InstrumentedSource inst(*fleet.source);
            const auto pref = compress_fleet(inst, backend, o);
            QVERIFY(!inst.concurrent);
            QVERIFY(inst.max_live <= 2);
            // The same loads plus the wrong guesses: the prefetch for a pass that never came, and with
            // automatic k the module 0 guessed when the feature pass follows the k = 1 trial.
            const int extra = inst.loads - plain_inst.loads;
            QVERIFY2(
                extra >= 0 && extra <= (clusters == 0 ? 2 : 1),
                qPrintable(QString("loads %1 vs %2").arg(inst.loads.load()).arg(plain_inst.loads.load())));
            qInfo("k=%d passes=%d loads %d / %d", pref.k, pref.timing.passes, int(inst.loads),
                  int(plain_inst.loads));
            QCOMPARE(pref.k, plain.k);
            QVERIFY(pref.assignment == plain.assignment);
            if (clusters == po.groups) QVERIFY(same_partition(pref.assignment, fleet.labels));
            QCOMPARE(pref.timing.passes, plain.timing.passes);
            QCOMPARE(pref.bases.size(), plain.bases.size());
            for (std::size_t c = 0; c < plain.bases.size(); ++c)
                for (std::size_t m = 0; m < plain.bases[c].size(); ++m) {
                    QVERIFY(same_bits(pref.bases[c][m].u, plain.bases[c][m].u));
                    QVERIFY(same_bits(pref.bases[c][m].v, plain.bases[c][m].v));
                }
            for (std::size_t a = 0; a < plain.cores.size(); ++a)
                for (std::size_t m = 0; m < plain.cores[a].size(); ++m)
                    QVERIFY(same_bits(pref.cores[a][m], plain.cores[a][m]));
            QCOMPARE(std::memcmp(&pref.mean_error, &plain.mean_error, sizeof(double)), 0);
        }
    }

    void cancelling_waits_for_at_most_the_one_load_in_flight() {
        const auto po = ragged_fleet();
        auto fleet = make_planted_fleet(po);
        compress_options o = prefetching_options(po);
        InstrumentedSource inst(*fleet.source);
        int calls = 0;
        QVERIFY_THROWS_EXCEPTION(cancelled_error, compress_fleet(inst, backend, o, [&](const progress_info&) {
                                     return ++calls < 5;
                                 }));
        // Each report before a load lets one load through: 4 loads, plus the prefetch started by the last.
        QCOMPARE(calls, 5);
        QCOMPARE(inst.loads.load(), 5);
        // Cancelling before the first module loads nothing, prefetching or not.
        InstrumentedSource none(*fleet.source);
        QVERIFY_THROWS_EXCEPTION(
            cancelled_error, compress_fleet(none, backend, o, [](const progress_info&) { return false; }));
        QCOMPARE(none.loads.load(), 0);
    }
};

QTEST_GUILESS_MAIN(TestCompressPrefetch)
#include "test_compress_prefetch.moc"
