// LoadGenerator (see load_generator.hpp).
#include "ui/serve/load_generator.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

namespace lorafleet::ui {

struct LoadGenerator::Shared {
    mutable std::mutex mutex;
    std::condition_variable wake; // stop() wakes the generator out of its inter-arrival wait
    bool stopRequested = false;
    bool submitting = true;
    LoadTally tally;
};

LoadGenerator::LoadGenerator(serve::serving_engine& engine, std::vector<std::vector<int>> prompts,
                             std::vector<std::string> adapterNames, LoadSettings settings)
    : m_engine(engine), m_settings(settings), m_shared(std::make_shared<Shared>()) {
    if (!(settings.rate > 0) || !std::isfinite(settings.rate) || settings.rate > 10000)
        throw usage_error("load generator", "the rate must be between 0 and 10,000 requests/s");
    if (!(settings.duration_s > 0) || !std::isfinite(settings.duration_s))
        throw usage_error("load generator", "the duration must be positive");
    if (settings.max_tokens < 1) throw usage_error("load generator", "max tokens must be at least 1");
    if (settings.max_in_flight < 1) throw usage_error("load generator", "max in flight must be at least 1");
    if (settings.adapters < 0) throw usage_error("load generator", "the adapter count must not be negative");
    const int context = engine.weights().max_context();
    if (settings.max_tokens >= context)
        throw usage_error("load generator",
                          "max tokens must be below the model's context of " + std::to_string(context));
    for (auto& p : prompts) {
        if (p.empty()) continue;
        if (int(p.size()) + settings.max_tokens > context)
            p.resize(std::size_t(context - settings.max_tokens));
        m_prompts.push_back(std::move(p));
    }
    if (m_prompts.empty()) throw usage_error("load generator", "no prompt has any token");
    std::sort(adapterNames.begin(), adapterNames.end());
    const auto n = std::min<std::size_t>(adapterNames.size(), std::size_t(settings.adapters));
    m_targets.assign(adapterNames.begin(), adapterNames.begin() + std::ptrdiff_t(n));
    if (m_targets.empty()) m_targets.emplace_back(); // "" = the base model
    m_thread = std::thread([this] { run(); });
}

LoadGenerator::~LoadGenerator() {
    stop();
    if (m_thread.joinable()) m_thread.join();
}

void LoadGenerator::stop() {
    std::lock_guard lock(m_shared->mutex);
    m_shared->stopRequested = true;
    m_shared->wake.notify_all();
}

bool LoadGenerator::isSubmitting() const {
    std::lock_guard lock(m_shared->mutex);
    return m_shared->submitting;
}

LoadTally LoadGenerator::tally() const {
    std::lock_guard lock(m_shared->mutex);
    return m_shared->tally;
}

void LoadGenerator::run() {
    using clock = std::chrono::steady_clock;
    std::mt19937_64 rng(m_settings.seed);
    std::exponential_distribution<double> gap(m_settings.rate);
    std::uniform_int_distribution<std::size_t> pickAdapter(0, m_targets.size() - 1);
    std::uniform_int_distribution<std::size_t> pickPrompt(0, m_prompts.size() - 1);
    const auto start = clock::now();
    const auto end = start + std::chrono::duration_cast<clock::duration>(
                                 std::chrono::duration<double>(m_settings.duration_s));
    auto next = start;
    std::uint64_t index = 0;
    std::shared_ptr<Shared> shared = m_shared;
    for (;;) {
        {
            std::unique_lock lock(shared->mutex);
            shared->wake.wait_until(lock, std::min(next, end), [&] { return shared->stopRequested; });
            if (shared->stopRequested || clock::now() >= end) break;
            if (clock::now() < next) continue; // spurious wake-up
            if (shared->tally.outstanding() >= std::uint64_t(m_settings.max_in_flight)) {
                ++shared->tally.dropped;
                next += std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(gap(rng)));
                continue;
            }
            ++shared->tally.submitted; // counted before submit(): on_done may run inside submit()
        }
        serve::completion_request req;
        req.adapter = m_targets[pickAdapter(rng)];
        req.prompt = m_prompts[pickPrompt(rng)];
        req.params.max_tokens = m_settings.max_tokens;
        req.params.stop_at_eos = false;
        req.params.sampling.temperature = 0.8f;
        req.params.sampling.top_k = 40;
        req.params.sampling.seed = m_settings.seed * 1000003u + index++;
        req.on_done = [shared](const serve::completion_result& r) {
            std::lock_guard lock(shared->mutex);
            switch (r.status) {
            case serve::completion_status::finished:
                ++shared->tally.completed;
                shared->tally.completionTokens += r.tokens.size();
                break;
            case serve::completion_status::failed:
                ++shared->tally.failed;
                if (shared->tally.firstError.empty()) shared->tally.firstError = r.error;
                break;
            case serve::completion_status::cancelled:
                ++shared->tally.cancelled;
                break;
            }
        };
        try {
            m_engine.submit(std::move(req));
        } catch (const std::exception& e) {
            std::lock_guard lock(shared->mutex);
            --shared->tally.submitted;
            ++shared->tally.rejected;
            if (shared->tally.firstError.empty()) shared->tally.firstError = e.what();
        }
        next += std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(gap(rng)));
        // A generator that fell more than a second behind (a slow submit) does not burst to catch up.
        next = std::max(next, clock::now() - std::chrono::seconds(1));
    }
    std::lock_guard lock(shared->mutex);
    shared->submitting = false;
}

} // namespace lorafleet::ui
