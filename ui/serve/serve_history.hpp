// ServeHistory: the rolling window of what the Serve tab charts. Each add() turns one metrics_snapshot
// (copied out of the engine under its short lock) into a ServeSample of plain numbers, keeps the samples
// of the last `windowSeconds`, and derives the two series the engine does not report directly:
//   active adapters: how many distinct adapters completed a request in the last `activeSeconds`
//                    (from the per-adapter counters of the snapshots that span that interval);
//   cache hit rate:  hits / (hits + misses) of the adapter cache over the same interval, only where a
//                    cache exists (raw-folder mode's LRU cache); NaN (a gap in the chart) without a cache
//                    and while nothing was looked up in the interval, so no rate is ever invented;
//   memory split:    the engine's own parts (weights, adapters, KV in use of the KV reserved), then
//                    "runtime": what the process grew by since the server was started (the RSS baseline
//                    taken before loading) beyond those parts (threads, scratch buffers, the HTTP server,
//                    the allocator), and "other": the rest of the process (the console itself, libraries),
//                    i.e. rss = weights + adapters + kv in use + runtime + other, each >= 0;
//   device memory:   only when the snapshot has it (the forward pass runs on a device): the engine's
//                    device split as it is (weights, KV pools, adapters, other used, free; they add up to
//                    the device's total), onDevice set.
// Units: times in seconds since the engine started (snapshot uptime), latencies in ms, memory in MiB.
// Invariants: sample times are strictly increasing (a snapshot not newer than the last one is ignored);
// every sample's values come from exactly one snapshot (and the counters of earlier ones in the window).
// Thread affinity: none (a plain value type); the Serve controller uses it on the GUI thread.
#pragma once

#include "engine/serve/metrics/metrics.hpp"

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace lorafleet::ui {

struct ServeSample {
    double t = 0; // snapshot uptime, s
    double tokensPerS = 0, promptTokensPerS = 0, requestsPerS = 0;
    double ttftP50Ms = 0, ttftP99Ms = 0, e2eP50Ms = 0, e2eP99Ms = 0;
    double weightsMiB = 0, kvMiB = 0, kvReservedMiB = 0, adaptersMiB = 0, runtimeMiB = 0, otherMiB = 0,
           rssMiB = 0;
    bool onDevice = false; // the snapshot had device memory; the dev* fields are set only then
    double devWeightsMiB = 0, devKvMiB = 0, devAdaptersMiB = 0, devOtherMiB = 0, devFreeMiB = 0,
           devTotalMiB = 0;
    std::string deviceName; // "NVIDIA H200" ("" on the CPU)
    int activeAdapters = 0;
    double hitRate = 0; // 0..1, or NaN: no cache, or no lookup in the interval
    int running = 0, queued = 0;
    std::uint64_t submitted = 0, completed = 0, failed = 0, completionTokens = 0;
};

class ServeHistory {
public:
    explicit ServeHistory(double windowSeconds = 60, double activeSeconds = 2);

    // `hasCache`: the engine's adapters sit behind a cache (raw-folder mode); otherwise hitRate is NaN.
    // False when the snapshot is not newer than the last sample (nothing added).
    bool add(const serve::metrics_snapshot& snapshot, bool hasCache);
    void clear(); // samples and counters; the baseline stays
    // The process RSS (bytes) before the server loaded anything; 0 = unknown (then "other" is 0 and
    // everything beyond the engine's parts counts as runtime).
    void setBaselineRss(std::uint64_t bytes) { m_baselineRss = bytes; }
    std::uint64_t baselineRss() const { return m_baselineRss; }

    const std::deque<ServeSample>& samples() const { return m_samples; }
    bool empty() const { return m_samples.empty(); }
    const ServeSample& last() const { return m_samples.back(); }
    double windowSeconds() const { return m_window; }
    double span() const { return empty() ? 0 : m_samples.back().t - m_samples.front().t; }

private:
    struct Counters { // what the derived series need from older snapshots
        double t = 0;
        std::map<std::string, std::uint64_t> requestsByAdapter;
        std::uint64_t hits = 0, misses = 0;
    };
    double m_window, m_active;
    std::uint64_t m_baselineRss = 0;
    std::deque<ServeSample> m_samples;
    std::deque<Counters> m_counters; // covers at least the last `activeSeconds`
};

} // namespace lorafleet::ui
