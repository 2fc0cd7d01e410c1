// Capacity plan (issue 18, `lorafleet-cli plan`): for a base model, a fleet (a bank, or raw adapters) and a
// memory budget, what is resident and how fast serving will be, per mode (base, raw, compressed):
//   memory  - the weights (float32, as served), KV bytes per token, one raw adapter's float32 A/B bytes
//             (mean and max over the fleet), the bank's resident bytes (bases + every core);
//   fit     - how many adapters fit resident raw vs compressed beside the weights, and the KV left after
//             the compressed bank: concurrent sequences at a given length;
//   speed   - predicted generated tokens/s per mode at a concurrency, from a step-time model measured on
//             this machine: decode steps of B sequences (B in 1, 8, 32, 64; every sequence its own adapter)
//             and the prefill cost per token, per mode. A request of P prompt and T generated tokens adds
//             P/T prefill tokens to each of its T decode steps, so at B running sequences
//                 step(B) = decode(B) + B·(P/T)·prefill_per_token [+ raw: (B/T)·misses·load],
//                 tokens/s = B / step(B),
//             with `misses` the chance a request's raw adapter is not resident (uniform draws over the
//             fleet; a cache of H adapters: 1 - H/N in the steady state; a cold run of R requests: at
//             least the share of first uses, N(1 - (1 - 1/N)^R) / R).
//             Measurements are kept in a small JSON cache (one entry per model geometry, device, threads,
//             mode and bank shape) and re-measured on request.
// Threading: the calling thread (measurement runs the CPU forward pass on its own workers).
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/model/model_weights.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lorafleet::quality {

// Measured step times of one mode: decode step seconds by batch size, and prefill seconds per token.
struct step_times {
    std::map<int, double> decode_s; // batch -> seconds per decode step (minimum over repeats)
    double prefill_per_token_s = 0;
    double load_s = 0; // raw mode: seconds to make one adapter resident (a cache miss); 0 otherwise
    // Seconds of one step at `batch` running sequences (piecewise linear between measured batches, linear
    // beyond the largest) with `prefill_tokens_per_step` prompt tokens besides.
    double step_seconds(double batch, double prefill_tokens_per_step) const;
};

struct fleet_bytes {
    int adapters = 0;
    std::uint64_t raw_mean = 0; // float32 A/B bytes of one adapter, mean over the fleet
    std::uint64_t raw_max = 0;
    std::uint64_t bank_bases = 0; // float32 bytes of every cluster basis (0 without a bank)
    std::uint64_t bank_core = 0;  // float32 bytes of one adapter's cores
    bool has_bank = false;
};

// From a bank (as read, without needing its source files).
fleet_bytes bank_fleet_bytes(const bank::compressed_bank& bank);
// From a raw provider's adapters (adapter_info::bytes: float32 A/B bytes when resident).
fleet_bytes raw_fleet_bytes(const std::vector<serve::adapter_info>& adapters);

struct plan_options {
    std::uint64_t memory_bytes = 0; // the budget for weights + adapters + KV
    int concurrency = 64;           // sequences running at once
    int prompt_tokens = 19;         // P: a one-line sonnet prompt
    int generated_tokens = 32;      // T
    int sequence_tokens = 0;        // length for "concurrent sequences": 0 = P + T
    // Raw mode's cache misses: the cache holds `raw_cache_bytes` (0: all that fits in the budget), adapters
    // are drawn uniformly; `requests` > 0 models a run of that many requests from a cold cache (as
    // bench-serve runs), 0 the steady state. Each miss adds load_s to a step.
    std::uint64_t raw_cache_bytes = 0;
    int requests = 0;
};

struct mode_prediction {
    std::string mode;        // "base", "raw", "compressed"
    bool measured = false;   // false: no step times for this mode (e.g. compressed without a bank)
    double tokens_per_s = 0; // predicted generated tokens/s at the concurrency
    double step_ms = 0;
    double miss_rate = 0; // raw: predicted misses per request
};

struct capacity_plan {
    std::uint64_t weight_bytes = 0;
    std::uint64_t kv_bytes_per_token = 0;
    fleet_bytes fleet;
    std::uint64_t memory_bytes = 0;
    std::int64_t raw_adapters_resident = 0;        // raw adapters that fit beside the weights
    std::int64_t compressed_adapters_resident = 0; // adapters whose cores fit beside weights and bases
    std::uint64_t kv_left_bytes = 0;               // after weights and the compressed bank (all adapters)
    int sequence_tokens = 0;
    std::int64_t concurrent_sequences = 0; // at sequence_tokens each, in kv_left_bytes
    int concurrency = 0;
    std::vector<mode_prediction> modes;
    nlohmann::json to_json() const;
};

// The step-time model of the modes measurable with what is given (base always; raw with raw adapters;
// compressed with a bank), from `cache_file` when it holds them for this key, else measured now (a few
// seconds per mode) and stored (atomically). `remeasure` ignores the cache.
struct step_model {
    std::map<std::string, step_times> modes;
    bool from_cache = false;
};
step_model load_or_measure_steps(std::shared_ptr<const serve::model_weights> weights,
                                 serve::AdapterProvider* raw, serve::AdapterProvider* compressed,
                                 const std::string& fleet_key, int threads,
                                 const std::filesystem::path& cache_file, bool remeasure);

capacity_plan make_plan(const serve::model_weights& weights, const fleet_bytes& fleet,
                        const step_model& steps, const plan_options& options);

// $XDG_CACHE_HOME/lorafleet/step-times.json, else ~/.cache/lorafleet/step-times.json.
std::filesystem::path default_step_cache();

} // namespace lorafleet::quality
