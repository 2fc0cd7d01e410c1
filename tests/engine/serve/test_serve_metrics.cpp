// metrics_recorder on hand-made events: nearest-rank percentiles against values worked out by hand,
// counters by status, per-adapter traffic sorted busiest first, rates and latencies that leave the
// rolling window while the counters stay, and the memory split with the process RSS.
#include "engine/serve/metrics/metrics_recorder.hpp"

#include <QtTest/QtTest>

#include <thread>

using namespace lorafleet::serve;

class TestServeMetrics : public QObject {
    Q_OBJECT
private slots:
    void nearestRankPercentiles() {
        std::vector<double> v;
        for (int i = 100; i >= 1; --i)
            v.push_back(i); // unsorted on purpose
        QCOMPARE(percentile(v, 0.50), 50.0);
        QCOMPARE(percentile(v, 0.90), 90.0);
        QCOMPARE(percentile(v, 0.99), 99.0);
        QCOMPARE(percentile(v, 1.00), 100.0);
        QCOMPARE(percentile(v, 0.0), 1.0);
        std::vector<double> three{0.3, 0.1, 0.2};
        QCOMPARE(percentile(three, 0.5), 0.2); // rank ceil(1.5) = 2
        std::vector<double> none;
        QCOMPARE(percentile(none, 0.5), 0.0);
    }

    void countersTrafficAndTheRollingWindow() {
        metrics_recorder rec(0.2); // a 200 ms window
        for (int i = 0; i < 5; ++i)
            rec.on_submit();
        rec.on_admit();
        rec.on_admit();
        auto s = rec.snapshot();
        QCOMPARE(s.requests_submitted, std::uint64_t(5));
        QCOMPARE(s.queue_depth, 3);

        rec.on_step(30, 2, 2, 2);
        QCOMPARE(rec.snapshot().active_adapters, 2);
        rec.on_step(0, 2, 2, 1);
        metrics_recorder::completion c;
        c.adapter = "a";
        c.prompt_tokens = 30;
        c.completion_tokens = 3;
        c.ttft_s = 0.1;
        c.total_s = 0.5; // per token: (0.5 - 0.1) / 2 = 0.2
        rec.on_complete(c);
        c.adapter = "b";
        c.total_s = 0.3;
        rec.on_complete(c);
        c.adapter = "b";
        c.status = completion_status::cancelled; // counted, but no latency sample
        c.total_s = 9;
        rec.on_complete(c);
        rec.on_dequeue_without_run();

        s = rec.snapshot();
        QCOMPARE(s.requests_completed, std::uint64_t(2));
        QCOMPARE(s.requests_cancelled, std::uint64_t(1));
        QCOMPARE(s.prompt_tokens, std::uint64_t(90));
        QCOMPARE(s.completion_tokens, std::uint64_t(9));
        QCOMPARE(s.queue_depth, 2);
        QCOMPARE(s.steps, std::uint64_t(2));
        QCOMPARE(s.last_batch_tokens, 2);
        QCOMPARE(s.peak_running, 2);
        QCOMPARE(s.active_adapters, 1); // the last step's
        rec.set_running(0);
        QCOMPARE(rec.snapshot().active_adapters, 0); // idle: nothing is active
        QCOMPARE(s.end_to_end.count, std::uint64_t(2));
        QCOMPARE(s.end_to_end.p50, 0.3);
        QCOMPARE(s.end_to_end.p99, 0.5);
        QCOMPARE(s.end_to_end.mean, 0.4);
        QCOMPARE(s.per_token.count, std::uint64_t(2));
        QVERIFY(qAbs(s.per_token.p99 - 0.2) < 1e-12);
        QVERIFY(s.prefill_tokens_per_s > 0 && s.decode_tokens_per_s > 0 && s.requests_per_s > 0);
        QCOMPARE(s.per_adapter.size(), std::size_t(2));
        QCOMPARE(s.per_adapter[0].name, std::string("b")); // 2 requests (one cancelled) before a's 1
        QCOMPARE(s.per_adapter[0].requests, std::uint64_t(2));
        QCOMPARE(s.per_adapter[0].p50_s, 0.3); // only the finished one has a latency
        QCOMPARE(s.per_adapter[1].p50_s, 0.5);

        // After the window, rates and window percentiles are empty again; counters remain.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        s = rec.snapshot();
        QCOMPARE(s.end_to_end.count, std::uint64_t(0));
        QCOMPARE(s.end_to_end.p50, 0.0);
        QCOMPARE(s.prefill_tokens_per_s, 0.0);
        QCOMPARE(s.requests_per_s, 0.0);
        QCOMPARE(s.requests_completed, std::uint64_t(2));
        QCOMPARE(s.per_adapter[1].p50_s, 0.5); // per-adapter latencies are the last few, not windowed
    }

    void memorySplitUsesTheProcessRss() {
        metrics_recorder rec(10);
        memory_split fixed;
        fixed.weights = 1000;
        fixed.kv_cache_reserved = 1 << 20;
        fixed.kv_cache_used = 4096;
        adapter_memory_stats a;
        a.resident_bytes = 512;
        a.hits = 7;
        a.misses = 3;
        a.evictions = 1;
        rec.set_memory(fixed, a, 12);
        const auto s = rec.snapshot();
        const std::uint64_t rss = process_rss_bytes();
        QVERIFY(rss > (1u << 20)); // a Qt test process holds more than a megabyte
        QVERIFY(s.memory.rss > 0 && s.memory.peak_rss >= s.memory.rss);
        QCOMPARE(s.memory.other, s.memory.rss - 1000 - 4096 - 512);
        QCOMPARE(s.memory.kv_cache_reserved, std::uint64_t(1 << 20));
        QCOMPARE(s.adapter_cache_hits, std::uint64_t(7));
        QCOMPARE(s.adapter_cache_misses, std::uint64_t(3));
        QCOMPARE(s.adapter_cache_evictions, std::uint64_t(1));
        QCOMPARE(s.adapters_loaded, 12);
    }
};

QTEST_GUILESS_MAIN(TestServeMetrics)
#include "test_serve_metrics.moc"
