// Prometheus text rendering of metrics_snapshot (see prometheus.hpp).
#include "engine/api/prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <vector>

namespace lorafleet::api {

namespace {

std::string number(double v) {
    if (std::isnan(v)) return "NaN";
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v); // shortest round-trip form
    return ec == std::errc() ? std::string(buf, end) : "NaN";
}

std::string number(std::uint64_t v) {
    return std::to_string(v);
}

class writer {
public:
    void family(const char* name, const char* type, const std::string& help) {
        m_out += "# HELP ";
        m_out += name;
        m_out += ' ';
        m_out += help;
        m_out += "\n# TYPE ";
        m_out += name;
        m_out += ' ';
        m_out += type;
        m_out += '\n';
    }
    // labels: "" or `key="value",...` already escaped
    void sample(const char* name, const std::string& labels, const std::string& value) {
        m_out += name;
        if (!labels.empty()) m_out += "{" + labels + "}";
        m_out += ' ';
        m_out += value;
        m_out += '\n';
    }
    template <class T> void single(const char* name, const char* type, const std::string& help, T value) {
        family(name, type, help);
        sample(name, "", number(value));
    }
    std::string take() { return std::move(m_out); }

private:
    std::string m_out;
};

std::string label(const char* key, const std::string& value) {
    return std::string(key) + "=\"" + prometheus_escape(value) + "\"";
}

} // namespace

std::string prometheus_escape(const std::string& value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string render_prometheus(const serve::metrics_snapshot& m, const prometheus_options& options) {
    writer w;
    const std::string window = " over the last " + number(m.window_seconds) + " s";
    if (!options.adapter_mode.empty()) {
        w.family("lorafleet_info", "gauge", "Constant 1; labels describe the server.");
        w.sample("lorafleet_info",
                 label("adapter_mode", options.adapter_mode) + "," + label("base_model", options.base_name),
                 "1");
    }
    if (!options.adapters_by_path.empty()) {
        w.family("lorafleet_adapters_served", "gauge",
                 "Adapters by the path that serves them (compressed, raw).");
        for (const auto& [path, count] : options.adapters_by_path)
            w.sample("lorafleet_adapters_served", label("path", path), number(double(count)));
    }
    if (!options.raw_adapters.empty()) {
        w.family("lorafleet_adapter_served_raw", "gauge",
                 "Adapters served from their original PEFT weights beside the compressed bank (hybrid).");
        for (const auto& name : options.raw_adapters)
            w.sample("lorafleet_adapter_served_raw", label("adapter", name), "1");
    }
    w.single("lorafleet_uptime_seconds", "gauge", "Seconds since the engine started.", m.uptime_s);

    w.single("lorafleet_requests_submitted_total", "counter", "Requests accepted by the engine.",
             m.requests_submitted);
    w.single("lorafleet_requests_completed_total", "counter", "Requests that finished normally.",
             m.requests_completed);
    w.single("lorafleet_requests_failed_total", "counter", "Requests that failed.", m.requests_failed);
    w.single("lorafleet_requests_cancelled_total", "counter",
             "Requests cancelled (client gone, adapter removed).", m.requests_cancelled);
    w.single("lorafleet_prompt_tokens_total", "counter", "Prompt tokens prefilled.", m.prompt_tokens);
    w.single("lorafleet_completion_tokens_total", "counter", "Tokens generated.", m.completion_tokens);
    w.single("lorafleet_steps_total", "counter", "Forward steps run.", m.steps);

    w.single("lorafleet_prefill_tokens_per_second", "gauge", "Prompt tokens per second" + window + ".",
             m.prefill_tokens_per_s);
    w.single("lorafleet_decode_tokens_per_second", "gauge", "Generated tokens per second" + window + ".",
             m.decode_tokens_per_s);
    w.single("lorafleet_requests_per_second", "gauge", "Completed requests per second" + window + ".",
             m.requests_per_s);

    w.single("lorafleet_queue_depth", "gauge", "Requests submitted and not yet running.",
             static_cast<double>(m.queue_depth));
    w.single("lorafleet_running_sequences", "gauge", "Sequences in the running batch.",
             static_cast<double>(m.running));
    w.single("lorafleet_peak_running_sequences", "gauge", "Most sequences running at once since start.",
             static_cast<double>(m.peak_running));
    w.single("lorafleet_active_adapters", "gauge", "Distinct adapters in the last engine step.",
             static_cast<double>(m.active_adapters));
    w.single("lorafleet_last_batch_tokens", "gauge", "Tokens in the last forward step.",
             static_cast<double>(m.last_batch_tokens));

    const struct {
        const char* name;
        const char* help;
        const serve::latency_summary* s;
    } latencies[] = {
        {"lorafleet_time_to_first_token_seconds", "Submit to first generated token", &m.ttft},
        {"lorafleet_time_per_output_token_seconds", "Time per generated token after the first", &m.per_token},
        {"lorafleet_request_latency_seconds", "Submit to done", &m.end_to_end},
    };
    for (const auto& l : latencies) {
        w.family(l.name, "gauge",
                 std::string(l.help) + ", quantiles and mean of the requests completed" + window + ".");
        w.sample(l.name, label("quantile", "0.5"), number(l.s->p50));
        w.sample(l.name, label("quantile", "0.9"), number(l.s->p90));
        w.sample(l.name, label("quantile", "0.99"), number(l.s->p99));
        w.sample(l.name, label("quantile", "mean"), number(l.s->mean));
        const std::string count_name = std::string(l.name) + "_window_count";
        w.single(count_name.c_str(), "gauge", std::string("Requests behind ") + l.name + window + ".",
                 l.s->count);
    }

    w.family("lorafleet_memory_bytes", "gauge", "Memory by use, in bytes.");
    w.sample("lorafleet_memory_bytes", label("kind", "weights"), number(m.memory.weights));
    w.sample("lorafleet_memory_bytes", label("kind", "kv_cache_reserved"),
             number(m.memory.kv_cache_reserved));
    w.sample("lorafleet_memory_bytes", label("kind", "kv_cache_used"), number(m.memory.kv_cache_used));
    w.sample("lorafleet_memory_bytes", label("kind", "adapters"), number(m.memory.adapters));
    w.sample("lorafleet_memory_bytes", label("kind", "other"), number(m.memory.other));
    w.single("lorafleet_process_resident_bytes", "gauge", "Process resident set size, sampled between steps.",
             m.memory.rss);
    w.single("lorafleet_process_peak_resident_bytes", "gauge",
             "Largest resident set size sampled since start.", m.memory.peak_rss);

    w.single("lorafleet_adapter_cache_hits_total", "counter", "Adapter cache hits (raw mode).",
             m.adapter_cache_hits);
    w.single("lorafleet_adapter_cache_misses_total", "counter", "Adapter cache misses (raw mode).",
             m.adapter_cache_misses);
    w.single("lorafleet_adapter_cache_evictions_total", "counter", "Adapter cache evictions (raw mode).",
             m.adapter_cache_evictions);
    w.single("lorafleet_adapters_loaded", "gauge", "Adapters the server routes to.",
             static_cast<double>(m.adapters_loaded));

    // Per adapter: the top N by requests (ties by name, so a scrape is stable), the rest summed.
    std::vector<const serve::adapter_traffic*> order;
    order.reserve(m.per_adapter.size());
    for (const auto& a : m.per_adapter)
        order.push_back(&a);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) {
        return a->requests != b->requests ? a->requests > b->requests : a->name < b->name;
    });
    const std::size_t shown = std::min(order.size(), options.top_adapters);
    serve::adapter_traffic other;
    other.name = "__other__";
    for (std::size_t i = shown; i < order.size(); ++i) {
        other.requests += order[i]->requests;
        other.prompt_tokens += order[i]->prompt_tokens;
        other.completion_tokens += order[i]->completion_tokens;
    }
    auto adapter_label = [&](const serve::adapter_traffic& a) {
        return label("adapter", a.name.empty() ? options.base_name : a.name);
    };
    const struct {
        const char* name;
        const char* help;
        std::uint64_t serve::adapter_traffic::*field;
    } counters[] = {
        {"lorafleet_adapter_requests_total", "Requests per adapter (top adapters; the rest as __other__).",
         &serve::adapter_traffic::requests},
        {"lorafleet_adapter_prompt_tokens_total", "Prompt tokens per adapter.",
         &serve::adapter_traffic::prompt_tokens},
        {"lorafleet_adapter_completion_tokens_total", "Generated tokens per adapter.",
         &serve::adapter_traffic::completion_tokens},
    };
    for (const auto& c : counters) {
        w.family(c.name, "counter", c.help);
        for (std::size_t i = 0; i < shown; ++i)
            w.sample(c.name, adapter_label(*order[i]), number(order[i]->*c.field));
        if (shown < order.size()) w.sample(c.name, adapter_label(other), number(other.*c.field));
    }
    w.family("lorafleet_adapter_latency_seconds", "gauge", "End-to-end latency quantiles per top adapter.");
    for (std::size_t i = 0; i < shown; ++i) {
        const std::string a = adapter_label(*order[i]);
        w.sample("lorafleet_adapter_latency_seconds", a + "," + label("quantile", "0.5"),
                 number(order[i]->p50_s));
        w.sample("lorafleet_adapter_latency_seconds", a + "," + label("quantile", "0.99"),
                 number(order[i]->p99_s));
    }
    return w.take();
}

} // namespace lorafleet::api
