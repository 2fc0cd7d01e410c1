// metrics_recorder (see metrics_recorder.hpp).
#include "engine/serve/metrics/metrics_recorder.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unistd.h>

namespace lorafleet::serve {

std::uint64_t process_rss_bytes() {
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size = 0, resident = 0;
    const int got = std::fscanf(f, "%llu %llu", &size, &resident);
    std::fclose(f);
    if (got != 2) return 0;
    const long page = sysconf(_SC_PAGESIZE);
    return std::uint64_t(resident) * std::uint64_t(page > 0 ? page : 4096);
}

double percentile(std::vector<double>& values, double q) {
    if (values.empty()) return 0;
    std::sort(values.begin(), values.end());
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    const double rank = std::ceil(std::clamp(q, 0.0, 1.0) * double(values.size()));
    const std::size_t i = rank < 1 ? 0 : std::size_t(rank) - 1;
    return values[std::min(i, values.size() - 1)];
}

namespace {

latency_summary summarize(std::vector<double> v) {
    latency_summary s;
    s.count = v.size();
    if (v.empty()) return s;
    double sum = 0;
    for (double x : v)
        sum += x;
    s.mean = sum / double(v.size());
    s.p50 = percentile(v, 0.50);
    s.p90 = percentile(v, 0.90);
    s.p99 = percentile(v, 0.99);
    return s;
}

constexpr std::size_t recent_per_adapter = 512;

} // namespace

metrics_recorder::metrics_recorder(double window_seconds)
    : m_window_s(window_seconds > 0 ? window_seconds : 10.0) {
    m_counters.window_seconds = m_window_s;
}

void metrics_recorder::prune(clock::time_point now) {
    const auto horizon =
        now - std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(m_window_s));
    while (!m_steps.empty() && m_steps.front().at < horizon)
        m_steps.pop_front();
    while (!m_done.empty() && m_done.front().at < horizon)
        m_done.pop_front();
}

void metrics_recorder::on_submit() {
    std::lock_guard lock(m_mutex);
    ++m_counters.requests_submitted;
    ++m_counters.queue_depth;
}

void metrics_recorder::on_admit() {
    std::lock_guard lock(m_mutex);
    m_counters.queue_depth = std::max(0, m_counters.queue_depth - 1);
}

void metrics_recorder::on_dequeue_without_run() {
    on_admit(); // the same bookkeeping: it leaves the queue
}

void metrics_recorder::on_step(int prefill_tokens, int decode_tokens, int running, int active_adapters) {
    const auto now = clock::now();
    std::lock_guard lock(m_mutex);
    prune(now);
    m_steps.push_back({now, prefill_tokens, decode_tokens});
    ++m_counters.steps;
    m_counters.last_batch_tokens = prefill_tokens + decode_tokens;
    m_counters.running = running;
    m_counters.peak_running = std::max(m_counters.peak_running, running);
    m_counters.active_adapters = active_adapters;
}

void metrics_recorder::set_running(int running) {
    std::lock_guard lock(m_mutex);
    m_counters.running = running;
    if (running == 0) m_counters.active_adapters = 0;
}

void metrics_recorder::on_complete(const completion& c) {
    const auto now = clock::now();
    std::lock_guard lock(m_mutex);
    prune(now);
    switch (c.status) {
    case completion_status::finished:
        ++m_counters.requests_completed;
        break;
    case completion_status::failed:
        ++m_counters.requests_failed;
        break;
    case completion_status::cancelled:
        ++m_counters.requests_cancelled;
        break;
    }
    m_counters.prompt_tokens += std::uint64_t(c.prompt_tokens);
    m_counters.completion_tokens += std::uint64_t(c.completion_tokens);
    traffic& t = m_traffic[c.adapter];
    ++t.requests;
    t.prompt_tokens += std::uint64_t(c.prompt_tokens);
    t.completion_tokens += std::uint64_t(c.completion_tokens);
    // Latencies describe served requests only: a cancelled or failed one says nothing about speed.
    if (c.status != completion_status::finished) return;
    done_sample d;
    d.at = now;
    d.ttft_s = c.ttft_s;
    d.total_s = c.total_s;
    if (c.completion_tokens > 1) d.per_token_s = (c.total_s - c.ttft_s) / double(c.completion_tokens - 1);
    m_done.push_back(d);
    t.recent_total_s.push_back(c.total_s);
    if (t.recent_total_s.size() > recent_per_adapter) t.recent_total_s.pop_front();
}

void metrics_recorder::set_memory(const memory_split& fixed, const adapter_memory_stats& adapters,
                                  int adapters_loaded) {
    const auto now = clock::now();
    std::lock_guard lock(m_mutex);
    memory_split& m = m_counters.memory;
    m.weights = fixed.weights;
    m.kv_cache_reserved = fixed.kv_cache_reserved;
    m.kv_cache_used = fixed.kv_cache_used;
    m.adapters = adapters.resident_bytes;
    m.adapters_capacity = adapters.capacity_bytes;
    if (m.rss == 0 || now - m_last_rss >= std::chrono::milliseconds(50)) {
        m.rss = process_rss_bytes();
        m_last_rss = now;
    }
    m.peak_rss = std::max(m.peak_rss, m.rss);
    const std::uint64_t known = m.weights + m.kv_cache_used + m.adapters;
    m.other = m.rss > known ? m.rss - known : 0;
    m_counters.adapter_cache_hits = adapters.hits;
    m_counters.adapter_cache_misses = adapters.misses;
    m_counters.adapter_cache_evictions = adapters.evictions;
    m_counters.adapters_loaded = adapters_loaded;
}

void metrics_recorder::set_device_memory(std::optional<device_memory_split> device) {
    if (device) {
        const std::uint64_t parts = device->weights + device->kv_cache + device->adapters;
        const std::uint64_t used = device->total > device->free ? device->total - device->free : 0;
        device->used_other = used > parts ? used - parts : 0;
    }
    std::lock_guard lock(m_mutex);
    m_counters.device_memory = std::move(device);
}

void metrics_recorder::sample_device_memory(
    const std::function<std::optional<device_memory_split>()>& query) {
    const auto now = clock::now();
    {
        std::lock_guard lock(m_mutex);
        if (m_last_device != clock::time_point{} && now - m_last_device < std::chrono::milliseconds(50))
            return;
        m_last_device = now;
    }
    set_device_memory(query());
}

metrics_snapshot metrics_recorder::snapshot() const {
    const auto now = clock::now();
    std::vector<double> ttft, per_token, total;
    std::vector<std::vector<double>> recent; // per adapter, in per_adapter's order
    metrics_snapshot s;
    {
        std::lock_guard lock(m_mutex);
        s = m_counters;
        s.uptime_s = std::chrono::duration<double>(now - m_start).count();
        const auto horizon =
            now - std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(m_window_s));
        std::uint64_t prefill = 0, decode = 0, done = 0;
        for (const auto& st : m_steps)
            if (st.at >= horizon) {
                prefill += std::uint64_t(st.prefill);
                decode += std::uint64_t(st.decode);
            }
        for (const auto& d : m_done)
            if (d.at >= horizon) {
                ++done;
                ttft.push_back(d.ttft_s);
                total.push_back(d.total_s);
                if (d.per_token_s >= 0) per_token.push_back(d.per_token_s);
            }
        // Early on the window is only as long as the engine has been up.
        const double span = std::max(1e-9, std::min(m_window_s, s.uptime_s));
        s.prefill_tokens_per_s = double(prefill) / span;
        s.decode_tokens_per_s = double(decode) / span;
        s.requests_per_s = double(done) / span;
        s.per_adapter.reserve(m_traffic.size());
        recent.reserve(m_traffic.size());
        for (const auto& [name, t] : m_traffic) {
            adapter_traffic a;
            a.name = name;
            a.requests = t.requests;
            a.prompt_tokens = t.prompt_tokens;
            a.completion_tokens = t.completion_tokens;
            s.per_adapter.push_back(std::move(a));
            recent.emplace_back(t.recent_total_s.begin(), t.recent_total_s.end());
        }
    }
    // Sorting and percentiles happen outside the lock.
    s.ttft = summarize(std::move(ttft));
    s.per_token = summarize(std::move(per_token));
    s.end_to_end = summarize(std::move(total));
    for (std::size_t i = 0; i < recent.size(); ++i) {
        s.per_adapter[i].p50_s = percentile(recent[i], 0.50);
        s.per_adapter[i].p99_s = percentile(recent[i], 0.99);
    }
    std::stable_sort(
        s.per_adapter.begin(), s.per_adapter.end(),
        [](const adapter_traffic& a, const adapter_traffic& b) { return a.requests > b.requests; });
    return s;
}

} // namespace lorafleet::serve
