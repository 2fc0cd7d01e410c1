// LoadGenerator: the Serve tab's built-in client. Submits completion requests straight to a
// serving_engine (no HTTP) as a Poisson process of `rate` requests/s for `duration_s` seconds, each for
// one of the first `adapters` adapter names (uniform, seeded) with a prompt drawn from `prompts`
// (token ids, cut so prompt + max_tokens fits the model's context), generating exactly `max_tokens`
// tokens (EOS ignored, so the offered token load is rate x max_tokens). At most `max_in_flight` requests
// are outstanding; an arrival beyond that is dropped and counted, so an overloaded engine shows a
// growing drop count instead of an unbounded queue.
// Invariants: every submitted request is counted exactly once as completed, failed or cancelled when the
// engine reports it (the tally lives in shared state the engine's callbacks keep alive, so callbacks
// arriving after this object is gone are harmless).
// Threading: one generator thread submits; the engine thread completes; every public method may be called
// from any thread. The engine must outlive this object (the destructor stops and joins the thread).
#pragma once

#include "engine/serve/scheduling/serving_engine.hpp"

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lorafleet::ui {

struct LoadSettings {
    double rate = 8;         // requests per second (mean of the Poisson arrivals)
    int adapters = 8;        // spread over the first N adapters (sorted by name); 0 = the base model
    double duration_s = 30;  // then the generator stops submitting
    int max_tokens = 32;     // completion tokens per request
    int max_in_flight = 256; // outstanding requests at most; later arrivals are dropped
    std::uint64_t seed = 1;
};

struct LoadTally {
    std::uint64_t submitted = 0, completed = 0, failed = 0, cancelled = 0;
    std::uint64_t rejected = 0; // submit() threw (the reason is in firstError)
    std::uint64_t dropped = 0;  // arrivals skipped because max_in_flight were outstanding
    std::uint64_t completionTokens = 0;
    std::string firstError;
    std::uint64_t outstanding() const { return submitted - completed - failed - cancelled; }
};

class LoadGenerator {
public:
    // `adapterNames`: the engine's adapters (any order; the first `settings.adapters` after sorting are
    // used). Throws lorafleet::usage_error for bad settings or no usable prompt. Starts the thread.
    LoadGenerator(serve::serving_engine& engine, std::vector<std::vector<int>> prompts,
                  std::vector<std::string> adapterNames, LoadSettings settings);
    ~LoadGenerator(); // stop() and join; outstanding requests keep running in the engine
    LoadGenerator(const LoadGenerator&) = delete;
    LoadGenerator& operator=(const LoadGenerator&) = delete;

    void stop();               // no further submissions; idempotent
    bool isSubmitting() const; // false once the duration passed or stop() was called
    LoadTally tally() const;
    const LoadSettings& settings() const { return m_settings; }
    const std::vector<std::string>& targets() const { return m_targets; } // adapter names in use

private:
    struct Shared;
    void run();

    serve::serving_engine& m_engine;
    std::vector<std::vector<int>> m_prompts;
    std::vector<std::string> m_targets;
    LoadSettings m_settings;
    std::shared_ptr<Shared> m_shared;
    std::thread m_thread;
};

} // namespace lorafleet::ui
