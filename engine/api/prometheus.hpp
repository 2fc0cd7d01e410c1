// Prometheus text exposition (format 0.0.4) of a serving-engine metrics_snapshot, for GET /metrics.
// Engine-wide series first (counters since start end in _total; rates, latency quantiles over the rolling
// window and "now" values are gauges), then per-adapter series for at most `top_adapters` adapters by
// request count, the rest summed into one adapter="__other__" series, so a fleet of thousands of adapters
// cannot blow up a scrape. The base model's traffic is labelled with `base_name`.
// Invariants: every family has one # HELP and one # TYPE line before its samples; label values are
// escaped (\\, \", \n); per-adapter counter sums over the emitted series equal the snapshot's sums.
// Pure function; thread-safe.
#pragma once

#include "engine/serve/metrics/metrics.hpp"

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace lorafleet::api {

struct prometheus_options {
    std::size_t top_adapters = 20;
    std::string base_name = "base";
    std::string adapter_mode; // "compressed", "raw" or "base": exported as an info label when not empty
    // Which path serves each adapter (hybrid serving): counts per path ("compressed", "raw"), exported as
    // lorafleet_adapters_served{path=...}, and the adapters served raw, each as
    // lorafleet_adapter_served_raw{adapter=...} 1. Empty: not exported.
    std::vector<std::pair<std::string, std::size_t>> adapters_by_path;
    std::vector<std::string> raw_adapters;
};

std::string render_prometheus(const serve::metrics_snapshot& m, const prometheus_options& options = {});

// A label value with \, " and newline escaped as the exposition format requires.
std::string prometheus_escape(const std::string& value);

} // namespace lorafleet::api
