// metrics_recorder: what the serving engine writes down as it runs (steps, admissions, completions) and
// turns into a metrics_snapshot on request: rolling-window rates and latency percentiles over the last
// `window_seconds`, counters since start, per-adapter traffic, and the memory split with the process RSS
// read from /proc/self/statm, and the device's memory while the forward pass runs on one.
// Invariants: counters only grow; window samples older than the window are dropped on every write and
// ignored by snapshot(); percentiles are nearest-rank over the window's samples (0 with no sample).
// Threading: every method takes the recorder's own mutex for a short, allocation-light critical section,
// so the engine thread writes and any thread reads (snapshot()) concurrently.
#pragma once

#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/metrics/metrics.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lorafleet::serve {

// Resident set size of this process in bytes (0 where /proc is unavailable).
std::uint64_t process_rss_bytes();

// Nearest-rank percentile (q in [0, 1]) of `values`, which it sorts; 0 for an empty vector.
double percentile(std::vector<double>& values, double q);

class metrics_recorder {
public:
    using clock = std::chrono::steady_clock;

    explicit metrics_recorder(double window_seconds);

    // ---- writes (the engine thread, except on_submit) ----
    void on_submit();              // a request was accepted into the queue
    void on_admit();               // a queued request started running
    void on_dequeue_without_run(); // a queued request ended before running (cancel, failure)
    void on_step(int prefill_tokens, int decode_tokens, int running, int active_adapters = 0);
    void set_running(int running);
    struct completion {
        completion_status status = completion_status::finished;
        std::string adapter;
        int prompt_tokens = 0;
        int completion_tokens = 0;
        double ttft_s = 0, total_s = 0;
    };
    void on_complete(const completion& c);
    // The engine's view of memory and the adapter cache, refreshed between steps (the provider may only be
    // asked on the engine thread). RSS is sampled here too, at most every 50 ms, and its peak kept.
    void set_memory(const memory_split& fixed, const adapter_memory_stats& adapters, int adapters_loaded);
    // The device's memory (nullopt: not on a device). used_other is derived here as total - free - weights
    // - kv_cache - adapters (0 when the parts do not fit); the other fields are kept as given.
    void set_device_memory(std::optional<device_memory_split> device);
    // set_device_memory(query()), with `query` (ForwardPass::device_memory: a runtime call) run on the
    // calling thread outside the lock, at most every 50 ms; in between the last answer stays.
    void sample_device_memory(const std::function<std::optional<device_memory_split>()>& query);

    metrics_snapshot snapshot() const;

private:
    void prune(clock::time_point now); // drops window samples older than the window (lock held)

    mutable std::mutex m_mutex;
    const clock::time_point m_start = clock::now();
    const double m_window_s;

    struct step_sample {
        clock::time_point at;
        int prefill = 0, decode = 0;
    };
    struct done_sample {
        clock::time_point at;
        double ttft_s = 0, per_token_s = -1, total_s = 0; // per_token_s < 0: fewer than 2 tokens
    };
    std::deque<step_sample> m_steps;
    std::deque<done_sample> m_done;

    struct traffic {
        std::uint64_t requests = 0, prompt_tokens = 0, completion_tokens = 0;
        std::deque<double> recent_total_s; // the last few hundred end-to-end latencies
    };
    std::map<std::string, traffic> m_traffic;

    metrics_snapshot m_counters; // counters, "now" values and memory; rates/percentiles filled in snapshot()
    clock::time_point m_last_rss{};
    clock::time_point m_last_device{}; // the last sample_device_memory query (epoch: never)
};

} // namespace lorafleet::serve
