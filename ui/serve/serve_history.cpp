// ServeHistory (see serve_history.hpp).
#include "ui/serve/serve_history.hpp"

#include <algorithm>
#include <limits>

namespace lorafleet::ui {

namespace {
constexpr double kMiB = 1024.0 * 1024.0;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
} // namespace

ServeHistory::ServeHistory(double windowSeconds, double activeSeconds)
    : m_window(windowSeconds), m_active(activeSeconds) {}

void ServeHistory::clear() {
    m_samples.clear();
    m_counters.clear();
}

bool ServeHistory::add(const serve::metrics_snapshot& m, bool hasCache) {
    if (!m_samples.empty() && m.uptime_s <= m_samples.back().t) return false;
    ServeSample s;
    s.t = m.uptime_s;
    s.tokensPerS = m.decode_tokens_per_s;
    s.promptTokensPerS = m.prefill_tokens_per_s;
    s.requestsPerS = m.requests_per_s;
    s.ttftP50Ms = m.ttft.p50 * 1e3;
    s.ttftP99Ms = m.ttft.p99 * 1e3;
    s.e2eP50Ms = m.end_to_end.p50 * 1e3;
    s.e2eP99Ms = m.end_to_end.p99 * 1e3;
    s.weightsMiB = double(m.memory.weights) / kMiB;
    s.kvMiB = double(m.memory.kv_cache_used) / kMiB;
    s.adaptersMiB = double(m.memory.adapters) / kMiB;
    s.kvReservedMiB = double(m.memory.kv_cache_reserved) / kMiB;
    const std::uint64_t known = m.memory.weights + m.memory.kv_cache_used + m.memory.adapters;
    const std::uint64_t beyond = m.memory.rss > known ? m.memory.rss - known : 0;
    const std::uint64_t other = std::min(beyond, m_baselineRss);
    s.runtimeMiB = double(beyond - other) / kMiB;
    s.otherMiB = double(other) / kMiB;
    s.rssMiB = double(m.memory.rss) / kMiB;
    if (m.device_memory) {
        const serve::device_memory_split& d = *m.device_memory;
        s.onDevice = true;
        s.devWeightsMiB = double(d.weights) / kMiB;
        s.devKvMiB = double(d.kv_cache) / kMiB;
        s.devAdaptersMiB = double(d.adapters) / kMiB;
        s.devOtherMiB = double(d.used_other) / kMiB;
        s.devFreeMiB = double(d.free) / kMiB;
        s.devTotalMiB = double(d.total) / kMiB;
        s.deviceName = d.device;
    }
    s.running = m.running;
    s.queued = m.queue_depth;
    s.submitted = m.requests_submitted;
    s.completed = m.requests_completed;
    s.failed = m.requests_failed;
    s.completionTokens = m.completion_tokens;

    Counters c;
    c.t = m.uptime_s;
    for (const auto& a : m.per_adapter)
        c.requestsByAdapter[a.name] = a.requests;
    c.hits = m.adapter_cache_hits;
    c.misses = m.adapter_cache_misses;
    // The reference: the newest older snapshot at least `activeSeconds` old (else the oldest one kept).
    while (m_counters.size() >= 2 && c.t - m_counters[1].t >= m_active)
        m_counters.pop_front();
    if (m_counters.empty()) {
        s.activeAdapters = 0;
        for (const auto& [name, n] : c.requestsByAdapter)
            if (n > 0) ++s.activeAdapters;
        const std::uint64_t looked = c.hits + c.misses;
        s.hitRate = hasCache && looked ? double(c.hits) / double(looked) : kNaN;
    } else {
        const Counters& ref = m_counters.front();
        for (const auto& [name, n] : c.requestsByAdapter) {
            const auto it = ref.requestsByAdapter.find(name);
            if (n > (it == ref.requestsByAdapter.end() ? 0 : it->second)) ++s.activeAdapters;
        }
        const std::uint64_t hits = c.hits - ref.hits, misses = c.misses - ref.misses;
        s.hitRate = hasCache && hits + misses ? double(hits) / double(hits + misses) : kNaN;
    }
    m_counters.push_back(std::move(c));

    m_samples.push_back(s);
    while (!m_samples.empty() && s.t - m_samples.front().t > m_window)
        m_samples.pop_front();
    return true;
}

} // namespace lorafleet::ui
