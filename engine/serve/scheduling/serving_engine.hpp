// serving_engine: continuous batching over one base model and an optional AdapterProvider. Requests for
// any mix of adapters join and leave the running batch every step; prompts are prefilled in chunks
// alongside other sequences' decode tokens; the paged KV cache has a byte budget, a request that does not
// fit waits and one that never could is refused at submit(). The forward pass runs on the CPU or on a
// CUDA device (engine_options::device, forward_pass.hpp). One engine thread runs the steps; every
// public method is thread-safe.
// Invariants: each accepted request gets exactly one on_done; on_text pieces concatenated equal the
// final text (valid UTF-8, no stop string); a request's tokens do not depend on what else is in the batch
// (batch-invariant forward, per-request sampler seeded from its params); cancel() frees the request's
// KV blocks at the next step boundary.
#pragma once

#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/metrics/metrics.hpp"
#include "engine/serve/model/forward_pass.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

struct engine_options {
    std::uint64_t kv_cache_bytes = 256ull << 20;
    int max_batch_tokens = 256;   // tokens per forward step (prefill chunks + decode tokens)
    int max_running = 64;         // sequences in the running batch
    int prefill_chunk = 64;       // prompt tokens a sequence contributes to one step at most
    int threads = 0;              // transformer threads; 0 = hardware threads
    double metrics_window_s = 10; // rolling window of rates and percentiles
    // Where the forward pass runs (forward_pass.hpp): cuda throws backend_unavailable from the constructor
    // when no device is usable; auto picks cuda only when a device is usable and the adapters have a
    // device twin. On cuda, add_adapter / remove_adapter fail with unsupported_error (not mirrored yet).
    device_choice device = device_choice::cpu;
    // add_adapter's limit: reading, validating and projecting an adapter (on the loader thread) that takes
    // longer fails the add with a timeout_error; the stuck loader thread is abandoned (it drops its result
    // whenever it finishes). Must be > 0.
    double adapter_load_timeout_s = 60;
};

struct completion_request {
    std::string adapter;      // adapter name; "" = the base model
    std::vector<int> prompt;  // token ids, not empty
    generation_params params; // max_tokens, sampling, stop strings, stop_at_eos (adapter/prefill ignored)
    // Called on the engine thread with each new piece of text; keep it short (queue it, do not block).
    std::function<void(std::string_view)> on_text;
    // Called exactly once, on the engine thread (or inside submit()/cancel()/shutdown()).
    std::function<void(const struct completion_result&)> on_done;
};

enum class completion_status { finished, cancelled, failed };

struct completion_result {
    completion_status status = completion_status::finished;
    std::string error; // why, when failed or cancelled
    finish_reason reason = finish_reason::max_tokens;
    std::string text;
    std::vector<int> tokens;
    int prompt_tokens = 0;
    double queue_s = 0; // submit -> first scheduled
    double ttft_s = 0;  // submit -> first generated token
    double total_s = 0; // submit -> done
};

// A lock-free look at whether the engine thread is making progress (for /health): readable while the
// engine thread is stuck anywhere, even holding the engine's lock.
struct engine_health {
    std::size_t pending = 0;     // requests submitted whose on_done has not run yet
    double since_progress_s = 0; // seconds since the engine thread last finished a loop iteration (a step,
                                 // a command, an admission) or since work arrived at an idle engine
    bool stopped = false;        // the engine thread has exited
};

class serving_engine {
public:
    // `adapters` may be null (base model only). Starts the engine thread. Throws backend_unavailable /
    // unsupported_error when options.device is cuda and the device or the adapters cannot serve there.
    serving_engine(std::shared_ptr<const model_weights> weights, std::shared_ptr<const Tokenizer> tokenizer,
                   std::unique_ptr<AdapterProvider> adapters, engine_options options = {});
    ~serving_engine(); // shutdown(false)

    // Queues a request and returns its id. Throws usage_error (nothing queued, on_done not called) for an
    // unknown adapter, an empty prompt, a prompt plus max_tokens beyond the model's context, a request
    // that could never fit the KV budget, invalid sampling params, or after shutdown.
    std::uint64_t submit(completion_request request);
    // Cancels a queued or running request (on_done with status cancelled); false if it already finished.
    bool cancel(std::uint64_t id);

    // add: the slow part (reading, validating, projecting onto the bank: AdapterProvider::prepare_add)
    // runs on a loader thread, one add at a time in call order, while serving goes on; only the install
    // into a slot runs on the engine thread between steps. The future holds the new adapter's info or the
    // add's exception: the provider's (io_error, format_error, validation_error, ...), usage_error for a
    // taken name or after shutdown, unsupported_error on a device, timeout_error past
    // adapter_load_timeout_s. An add still loading at shutdown fails with usage_error; the destructor
    // never waits for a loader thread. At most 4 timed-out loads may still be stuck at once; further adds
    // fail with io_error until one of them finishes.
    // remove: on the engine thread between steps; false for an unknown name; requests of the adapter
    // that are queued or running are cancelled first, and its slot is reused by a later add.
    std::future<adapter_info> add_adapter(const std::filesystem::path& peft_dir, const std::string& name);
    std::future<bool> remove_adapter(const std::string& name);
    std::vector<adapter_info> adapters() const; // a copy of the whole list: for listings, not per request
    // Whether a request may name `name` now (submit() would not refuse it as unknown): one hash lookup
    // under the engine's short lock, no copy, whatever the number of adapters. An adapter being removed
    // stops being found before it leaves adapters().
    bool has_adapter(std::string_view name) const;
    std::string_view adapter_mode() const; // "compressed", "raw" or "base"
    std::string_view device() const;       // where the forward pass runs: "cpu" or "cuda"
    const std::string&
    device_note() const; // how it was chosen, e.g. "cpu (auto: no usable CUDA device: ...)"

    metrics_snapshot metrics() const;
    engine_health health() const;
    const Tokenizer& tokenizer() const;
    const model_weights& weights() const;

    // Stops accepting; finish_in_flight: runs until queued and running requests are done, else cancels
    // them. Joins the engine thread. Idempotent.
    void shutdown(bool finish_in_flight);

private:
    struct impl;
    std::unique_ptr<impl> m_impl;
};

} // namespace lorafleet::serve
