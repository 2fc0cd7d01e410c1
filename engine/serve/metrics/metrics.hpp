// What the serving engine reports about itself: one consistent snapshot, copied out under a short lock
// (serving_engine::metrics()), for the CLI's bench-serve, the HTTP server's /metrics and the console's
// live charts. Rates are over a rolling window (the last `window_seconds`), counters are since start.
// device_memory is present only while the forward pass runs on a device that reports its memory
// (ForwardPass::device_memory); on the CPU it is nullopt and `memory` is the whole story.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lorafleet::serve {

struct latency_summary { // seconds; 0 when there is no sample yet
    double p50 = 0, p90 = 0, p99 = 0, mean = 0;
    std::uint64_t count = 0;
};

struct adapter_traffic {
    std::string name; // "" = base model
    std::uint64_t requests = 0;
    std::uint64_t prompt_tokens = 0;
    std::uint64_t completion_tokens = 0;
    double p50_s = 0, p99_s = 0; // end-to-end latency
};

struct memory_split { // bytes
    std::uint64_t weights = 0;
    std::uint64_t kv_cache_reserved = 0; // the KV budget
    std::uint64_t kv_cache_used = 0;     // blocks held by running sequences
    std::uint64_t adapters = 0;          // bank (bases + cores) or raw cache residents
    std::uint64_t adapters_capacity = 0; // raw mode: the LRU cache's budget; compressed: == adapters
    std::uint64_t other = 0;             // process RSS minus the above (never negative)
    std::uint64_t rss = 0;      // process resident set size (/proc/self/statm), sampled between steps
    std::uint64_t peak_rss = 0; // the largest rss sampled since the engine started
};

// Memory of the device the forward pass runs on (bytes), as the pass accounts for it plus the runtime's
// free/total. Invariant once recorded (metrics_recorder): weights + kv_cache + adapters + used_other + free
// == total whenever the parts fit (else used_other is 0 and the parts are as reported).
struct device_memory_split {
    std::string device;           // "NVIDIA H200"
    std::uint64_t weights = 0;    // the base model's tensors as stored on the device
    std::uint64_t kv_cache = 0;   // the KV pools (reserved; the host split's kv_cache_used says how full)
    std::uint64_t adapters = 0;   // the provider's device twin: bank bases and cores, or the raw LRU pages
    std::uint64_t used_other = 0; // used by anything else: CUDA context, cuBLAS workspaces, scratch,
                                  // other processes (derived: total - free - the parts above, >= 0)
    std::uint64_t free = 0;       // cudaMemGetInfo
    std::uint64_t total = 0;
};

struct metrics_snapshot {
    double uptime_s = 0;
    double window_seconds = 10;
    // Rolling rates over the window.
    double prefill_tokens_per_s = 0;
    double decode_tokens_per_s = 0;
    double requests_per_s = 0; // completed requests
    // Now.
    int queue_depth = 0; // submitted, not yet running
    int running = 0;     // sequences in the batch (admitted, holding KV blocks)
    int last_batch_tokens = 0;
    int peak_running = 0;    // most sequences running at once (admitted, holding KV blocks) since start
    int active_adapters = 0; // distinct adapters among the sequences of the last step (0 when idle)
    // Since start.
    std::uint64_t requests_submitted = 0, requests_completed = 0, requests_failed = 0, requests_cancelled = 0;
    std::uint64_t prompt_tokens = 0, completion_tokens = 0, steps = 0;
    latency_summary ttft, per_token, end_to_end; // over the window's completed requests
    memory_split memory;
    std::optional<device_memory_split> device_memory; // only while serving on a device (see above)
    std::uint64_t adapter_cache_hits = 0, adapter_cache_misses = 0, adapter_cache_evictions = 0;
    int adapters_loaded = 0;
    std::vector<adapter_traffic> per_adapter; // sorted by requests, descending
};

} // namespace lorafleet::serve
