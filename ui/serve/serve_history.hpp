// ServeHistory: the rolling window of what the Serve tab charts. Each add() turns one metrics_snapshot
// (copied out of the engine under its short lock) into a ServeSample of plain numbers, keeps the samples
// of the last `windowSeconds`, and derives the two series the engine does not report directly:
//   active adapters: how many distinct adapters completed a request in the last `activeSeconds`
//                    (from the per-adapter counters of the snapshots that span that interval);
//   cache hit rate:  hits / (hits + misses) of the adapter cache over the same interval; when nothing
//                    was looked up, 1 in compressed mode (every adapter is resident) and the previous
//                    value otherwise.
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
    double weightsMiB = 0, kvMiB = 0, adaptersMiB = 0, otherMiB = 0, rssMiB = 0;
    int activeAdapters = 0;
    double hitRate = 1; // 0..1
    int running = 0, queued = 0;
    std::uint64_t submitted = 0, completed = 0, failed = 0, completionTokens = 0;
};

class ServeHistory {
public:
    explicit ServeHistory(double windowSeconds = 60, double activeSeconds = 2);

    // `compressed`: the engine serves a bank (every adapter always resident). False when the snapshot is
    // not newer than the last sample (nothing added).
    bool add(const serve::metrics_snapshot& snapshot, bool compressed);
    void clear();

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
    std::deque<ServeSample> m_samples;
    std::deque<Counters> m_counters; // covers at least the last `activeSeconds`
};

} // namespace lorafleet::ui
