// serving_engine (see serving_engine.hpp). Sections: state shared with callers (under one mutex), the
// public methods, the engine thread's loop (take what callers sent, cancel, run adapter commands, admit,
// step), one step (plan, prepare adapters, forward, sample), and finishing requests.
// Adapter loads: add_adapter queues a load job; the engine thread starts one job at a time on a detached
// loader thread (provider->prepare_add), which shares only a load_attempt (its result) and a load_link (a
// way to wake the engine that is cut before the engine goes away) with the engine; the engine thread
// installs the result between steps, or gives up on the attempt at its deadline or at shutdown. A
// loader thread holds the provider by shared_ptr, so an abandoned one may outlive the engine safely.
// KV accounting: a running request holds a reservation of blocks_for(capacity) blocks for its whole life
// (capacity = prompt + max_tokens - 1, at most the context). The cache itself only holds the blocks the
// sequence has filled (forward() trims to what a step needs), but the reservations never add up to more
// than the cache, so a step can never run out of blocks and no sequence is ever preempted.
#include "engine/serve/scheduling/serving_engine.hpp"

#include "engine/core/error.hpp"
#include "engine/serve/metrics/metrics_recorder.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "engine/serve/scheduling/request_state.hpp"
#include "engine/serve/scheduling/step_planner.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace lorafleet::serve {

namespace {
const std::string where = "serving engine";
// Why add_adapter / remove_adapter refuse on a device (AdapterProvider::device_twin).
const std::string no_device_changes =
    "adapters cannot be added or removed while serving on a CUDA device (not mirrored on the device yet); "
    "serve with --device cpu to change adapters at runtime";
// Timed-out loads whose threads are still stuck; beyond this, adds are refused rather than piling up threads.
constexpr int max_stuck_loaders = 4;

// One add_adapter call waiting for, or in, the loader.
struct load_job {
    std::filesystem::path dir;
    std::string name;
    std::shared_ptr<std::promise<adapter_info>> promise;
};

// The result slot one loader thread shares with the engine thread.
struct load_attempt {
    std::mutex mutex;
    bool finished = false;  // the loader is done (result or error stored unless abandoned)
    bool abandoned = false; // the engine gave up (deadline or shutdown): the loader drops its result
    std::unique_ptr<prepared_adapter> result;
    std::exception_ptr error;
};
} // namespace

struct serving_engine::impl {
    impl(std::shared_ptr<const model_weights> w, std::shared_ptr<const Tokenizer> t,
         std::shared_ptr<AdapterProvider> a, engine_options o)
        : weights(std::move(w)), tokenizer(std::move(t)), provider(std::move(a)), options(o),
          chosen(make_forward_pass(o.device, weights, o.threads, provider.get())), model(*chosen.pass),
          cache(model.make_cache(o.kv_cache_bytes)), recorder(o.metrics_window_s) {
        if (options.max_batch_tokens < 1) throw usage_error(where, "max_batch_tokens must be >= 1");
        if (options.max_running < 1) throw usage_error(where, "max_running must be >= 1");
        if (options.prefill_chunk < 1) throw usage_error(where, "prefill_chunk must be >= 1");
        if (!(options.adapter_load_timeout_s > 0))
            throw usage_error(where, "adapter_load_timeout_s must be > 0");
        context = weights->max_context();
        usable_vocab = std::min(weights->geometry().vocab_size, tokenizer->vocab_size());
        mode = provider ? std::string(provider->mode()) : std::string("base");
        if (provider) publish_adapters(provider->list());
        update_memory();
    }

    // ---- fixed after construction ----
    std::shared_ptr<const model_weights> weights;
    std::shared_ptr<const Tokenizer> tokenizer;
    // Engine thread only after construction, except prepare_add() (const, any thread) on loader threads,
    // which share ownership so that an abandoned loader never outlives it.
    std::shared_ptr<AdapterProvider> provider;
    engine_options options;
    forward_pass_choice chosen; // the pass and how it was chosen
    ForwardPass& model;         // *chosen.pass; engine thread only
    kv_cache cache;             // engine thread only; block_size/total_blocks are constant
    int context = 0;
    int usable_vocab = 0;
    std::string mode;
    metrics_recorder recorder; // its own lock

    // ---- shared with callers, under `mutex` ----
    mutable std::mutex mutex;
    std::condition_variable wake;
    bool accepting = true;
    bool stop_requested = false;
    bool finish_in_flight = true;
    std::uint64_t next_id = 1;
    std::deque<std::unique_ptr<request_state>> incoming;
    std::unordered_set<std::uint64_t> live; // submitted, on_done not yet called

    // ---- health(): written without the lock, read by any thread ----
    std::atomic<std::size_t> pending{0};      // live.size()
    std::atomic<std::int64_t> progress_ns{0}; // steady clock: last loop iteration done / idle -> busy
    std::atomic<bool> thread_done{false};
    static std::int64_t now_ns() {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }
    std::unordered_set<std::uint64_t> cancels; // cancel() asked, not yet handled
    std::deque<std::function<void()>> commands;
    std::deque<load_job> loads; // add_adapter calls not yet taken by the engine thread
    bool load_event = false;    // a loader thread finished since the engine thread last looked
    // name -> slot of every adapter a request may name; hashed, with string_view lookups (no copy).
    struct name_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    std::unordered_map<std::string, int, name_hash, std::equal_to<>> slots_by_name;
    std::vector<adapter_info> adapter_list;

    // ---- engine thread only ----
    struct running_request {
        std::unique_ptr<request_state> state;
        int seq = 0;
        int blocks = 0; // reserved for its whole life
    };
    std::deque<load_job> load_queue;              // taken from `loads`, not started yet
    std::optional<load_job> active_load;          // the job on the loader thread
    std::shared_ptr<load_attempt> active_attempt; // its result slot
    std::chrono::steady_clock::time_point load_deadline;
    std::deque<std::unique_ptr<request_state>> waiting; // FIFO
    std::vector<running_request> running;               // admission order = FIFO
    int reserved_blocks = 0;
    int next_seq = 0;

    std::mutex join_mutex; // one joiner at a time
    std::thread thread;

    // How loader threads reach the engine: `engine` is cleared (under `mutex`) once the engine thread has
    // been joined, before the engine's state goes away; `stuck` counts abandoned loaders still running.
    // Lock order: load_attempt::mutex, then link::mutex, then impl::mutex (never the other way round).
    struct link_state {
        std::mutex mutex;
        impl* engine = nullptr;
        int stuck = 0;
    };
    std::shared_ptr<link_state> link = std::make_shared<link_state>();

    // Called by a loader thread (through `link`) when it has stored its result.
    void loader_finished() {
        {
            std::lock_guard lock(mutex);
            load_event = true;
        }
        wake.notify_one();
    }

    // ---- adapter loads (engine thread) ----
    void start_load(load_job job) {
        try {
            if (!provider) throw usage_error(where, "this engine serves the base model only (no adapters)");
            if (model.device() != "cpu") throw unsupported_error(where, no_device_changes);
            if (provider->find(job.name) >= 0)
                throw usage_error(job.dir.string(), "an adapter named '" + job.name + "' is already loaded");
            {
                std::lock_guard lock(link->mutex);
                if (link->stuck >= max_stuck_loaders)
                    throw io_error(job.dir.string(), std::to_string(link->stuck) +
                                                         " earlier adapter loads are still stuck reading "
                                                         "their files; not starting another");
            }
            auto attempt = std::make_shared<load_attempt>();
            std::thread([p = std::shared_ptr<const AdapterProvider>(provider), attempt, l = link,
                         dir = job.dir, name = job.name] {
                std::unique_ptr<prepared_adapter> result;
                std::exception_ptr error;
                try {
                    result = p->prepare_add(dir, name);
                } catch (...) {
                    error = std::current_exception();
                }
                bool abandoned = false;
                {
                    std::lock_guard lock(attempt->mutex);
                    abandoned = attempt->abandoned;
                    if (!abandoned) {
                        attempt->result = std::move(result);
                        attempt->error = error;
                    }
                    attempt->finished = true;
                }
                result.reset(); // an abandoned result is freed here, on this thread
                std::lock_guard lock(l->mutex);
                if (abandoned) --l->stuck;
                if (l->engine) l->engine->loader_finished();
            }).detach();
            active_attempt = std::move(attempt);
            active_load = std::move(job);
            load_deadline = std::chrono::steady_clock::now() +
                            std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                std::chrono::duration<double>(options.adapter_load_timeout_s));
        } catch (...) {
            job.promise->set_exception(std::current_exception());
        }
    }

    // Installs a finished load, gives up on one past its deadline (or on every load when `stopping`), and
    // starts the next queued one.
    void service_loads(bool stopping) {
        if (active_attempt) {
            bool finished = false, abandon = false;
            std::unique_ptr<prepared_adapter> result;
            std::exception_ptr error;
            {
                std::lock_guard lock(active_attempt->mutex);
                finished = active_attempt->finished;
                if (finished) {
                    result = std::move(active_attempt->result);
                    error = active_attempt->error;
                } else if (stopping || std::chrono::steady_clock::now() >= load_deadline) {
                    active_attempt->abandoned = true;
                    abandon = true;
                }
            }
            auto& promise = *active_load->promise;
            if (finished) {
                try {
                    if (error) std::rethrow_exception(error);
                    if (model.device() != "cpu") throw unsupported_error(where, no_device_changes);
                    adapter_info info = provider->install(std::move(result));
                    publish_adapters(provider->list());
                    promise.set_value(std::move(info));
                } catch (...) {
                    promise.set_exception(std::current_exception());
                }
            } else if (abandon) {
                {
                    std::lock_guard lock(link->mutex);
                    ++link->stuck;
                }
                const std::string dir = active_load->dir.string();
                if (stopping)
                    promise.set_exception(std::make_exception_ptr(
                        usage_error(dir, "the engine shut down before the adapter was loaded")));
                else
                    promise.set_exception(std::make_exception_ptr(timeout_error(
                        dir, "loading the adapter took longer than " +
                                 std::to_string(int(std::ceil(options.adapter_load_timeout_s))) +
                                 " s (adapter_load_timeout_s); gave up waiting for it")));
            }
            if (finished || abandon) {
                active_attempt.reset();
                active_load.reset();
            }
        }
        if (stopping) {
            for (auto& job : load_queue)
                job.promise->set_exception(std::make_exception_ptr(
                    usage_error(job.dir.string(), "the engine shut down before the adapter was loaded")));
            load_queue.clear();
            return;
        }
        while (!active_attempt && !load_queue.empty()) {
            load_job job = std::move(load_queue.front());
            load_queue.pop_front();
            start_load(std::move(job)); // on a refusal its promise is failed and the next one starts
        }
    }

    int blocks_for_capacity(int capacity) const { return cache.blocks_for(std::max(capacity, 1)); }

    void publish_adapters(std::vector<adapter_info> list) {
        std::unordered_map<std::string, int, name_hash, std::equal_to<>> by_name;
        by_name.reserve(list.size());
        for (const auto& a : list)
            by_name[a.name] = a.slot;
        std::lock_guard lock(mutex);
        adapter_list = std::move(list);
        slots_by_name = std::move(by_name);
    }

    void update_memory() {
        memory_split fixed;
        fixed.weights = weights->parameter_bytes();
        fixed.kv_cache_reserved = std::uint64_t(cache.total_blocks()) * cache.bytes_per_block();
        fixed.kv_cache_used =
            std::uint64_t(cache.total_blocks() - cache.free_blocks()) * cache.bytes_per_block();
        adapter_memory_stats stats;
        int loaded = 0;
        if (provider) {
            stats = provider->memory();
            loaded = static_cast<int>(adapter_list_size());
        }
        recorder.set_memory(fixed, stats, loaded);
        recorder.sample_device_memory([this] { return model.device_memory(); }); // nullopt on the CPU
    }
    std::size_t adapter_list_size() const {
        std::lock_guard lock(mutex);
        return adapter_list.size();
    }

    // ---- finishing ----
    // Ends a request that never ran or is running; calls on_done with no lock held.
    void complete(request_state& r, completion_status status, const std::string& why, bool was_running) {
        const completion_result result = r.finish(status, why);
        metrics_recorder::completion c;
        c.status = status;
        c.adapter = r.adapter();
        c.prompt_tokens = r.prefilled(); // tokens processed: all of them for a finished request
        c.completion_tokens = static_cast<int>(result.tokens.size());
        c.ttft_s = result.ttft_s;
        c.total_s = result.total_s;
        if (!was_running) recorder.on_dequeue_without_run();
        recorder.on_complete(c);
        {
            std::lock_guard lock(mutex);
            live.erase(r.id());
            pending.store(live.size(), std::memory_order_relaxed);
            cancels.erase(r.id());
        }
        if (r.request().on_done) {
            try {
                r.request().on_done(result);
            } catch (...) {
                // A caller's callback must not take the engine down; its request is over either way.
            }
        }
    }

    // Removes running[i] (frees its blocks) and completes it.
    void retire(std::size_t i, completion_status status, const std::string& why) {
        running_request rr = std::move(running[i]);
        running.erase(running.begin() + std::ptrdiff_t(i));
        cache.free_sequence(rr.seq);
        reserved_blocks -= rr.blocks;
        // The metrics say it is gone before its on_done runs (a caller may look at them right then).
        recorder.set_running(static_cast<int>(running.size()));
        update_memory();
        complete(*rr.state, status, why, true);
    }

    // Completes every queued or running request that matches `pred`.
    template <class Pred> void end_matching(Pred pred, completion_status status, const std::string& why) {
        for (std::size_t i = 0; i < waiting.size();) {
            if (pred(*waiting[i])) {
                std::unique_ptr<request_state> r = std::move(waiting[i]);
                waiting.erase(waiting.begin() + std::ptrdiff_t(i));
                complete(*r, status, why, false);
            } else {
                ++i;
            }
        }
        for (std::size_t i = 0; i < running.size();) {
            if (pred(*running[i].state))
                retire(i, status, why);
            else
                ++i;
        }
    }

    void fail_slot(int slot, const std::string& why) {
        end_matching([&](const request_state& r) { return r.slot() == slot; }, completion_status::failed,
                     why);
    }

    // ---- the loop ----
    void admit() {
        std::vector<int> need;
        const std::size_t look = std::min(waiting.size(), std::size_t(options.max_running));
        need.reserve(look);
        for (std::size_t i = 0; i < look; ++i)
            need.push_back(blocks_for_capacity(waiting[i]->capacity()));
        const int n = admit_count(need, cache.total_blocks() - reserved_blocks,
                                  options.max_running - static_cast<int>(running.size()));
        for (int i = 0; i < n; ++i) {
            running_request rr;
            rr.state = std::move(waiting.front());
            waiting.pop_front();
            rr.blocks = need[std::size_t(i)];
            do {
                rr.seq = next_seq;
                next_seq = next_seq == std::numeric_limits<int>::max() ? 0 : next_seq + 1;
            } while (cache.has_sequence(rr.seq));
            cache.add_sequence(rr.seq);
            reserved_blocks += rr.blocks;
            recorder.on_admit();
            running.push_back(std::move(rr));
        }
    }

    void run() {
        for (;;) {
            std::vector<std::uint64_t> to_cancel;
            std::deque<std::function<void()>> todo;
            bool stop = false, finish = true;
            {
                std::unique_lock lock(mutex);
                const auto ready = [&] {
                    return stop_requested || !incoming.empty() || !commands.empty() || !cancels.empty() ||
                           !running.empty() || !waiting.empty() || !loads.empty() || load_event;
                };
                // A load in flight: wake at its deadline too.
                if (active_attempt)
                    wake.wait_until(lock, load_deadline, ready);
                else
                    wake.wait(lock, ready);
                load_event = false;
                while (!loads.empty()) {
                    load_queue.push_back(std::move(loads.front()));
                    loads.pop_front();
                }
                while (!incoming.empty()) {
                    waiting.push_back(std::move(incoming.front()));
                    incoming.pop_front();
                }
                to_cancel.assign(cancels.begin(), cancels.end());
                cancels.clear();
                todo.swap(commands);
                stop = stop_requested;
                finish = finish_in_flight;
            }
            if (!to_cancel.empty()) {
                const std::unordered_set<std::uint64_t> ids(to_cancel.begin(), to_cancel.end());
                end_matching([&](const request_state& r) { return ids.count(r.id()) != 0; },
                             completion_status::cancelled, "cancelled");
            }
            for (auto& command : todo)
                command();
            service_loads(false);
            if (stop && !finish) {
                end_matching([](const request_state&) { return true; }, completion_status::cancelled,
                             "the engine shut down");
                break;
            }
            admit();
            if (running.empty()) {
                recorder.set_running(0);
                update_memory();
                progress_ns.store(now_ns(), std::memory_order_relaxed);
                if (stop && waiting.empty()) break;
                continue;
            }
            try {
                step();
            } catch (const std::exception& e) {
                // Nothing a step does is expected to throw past its own handlers (bad_alloc, a broken
                // provider): fail what is running rather than lose the engine thread.
                const std::string why = std::string("engine step failed: ") + e.what();
                while (!running.empty())
                    retire(running.size() - 1, completion_status::failed, why);
            }
            update_memory();
            progress_ns.store(now_ns(), std::memory_order_relaxed);
        }
        {
            // Loads sent before shutdown that the loop did not take yet.
            std::lock_guard lock(mutex);
            while (!loads.empty()) {
                load_queue.push_back(std::move(loads.front()));
                loads.pop_front();
            }
        }
        service_loads(true);
        update_memory();
        thread_done.store(true, std::memory_order_relaxed);
    }

    // Asks the provider for `slots`; returns how many may run. On a provider exception, finds the adapters
    // that fail on their own, fails their requests and sets `failed` (the next step plans without them).
    std::size_t prepare(const std::vector<int>& slots, bool& failed) {
        failed = false;
        if (!provider || slots.empty()) return slots.size();
        try {
            return std::min(provider->prepare(slots), slots.size());
        } catch (const std::exception& all) {
            bool isolated = false;
            for (int s : slots) {
                try {
                    provider->prepare(std::span(&s, 1));
                } catch (const std::exception& one) {
                    fail_slot(s, one.what());
                    isolated = true;
                }
            }
            // Only the combination fails: fail them all rather than retry forever.
            if (!isolated)
                for (int s : slots)
                    fail_slot(s, all.what());
            failed = true;
            return 0;
        }
    }

    void step() {
        std::vector<plan_candidate> candidates;
        candidates.reserve(running.size());
        for (const auto& rr : running)
            candidates.push_back({rr.state->slot(), rr.state->prompt_size() - rr.state->prefilled()});
        std::vector<planned_sequence> plan =
            plan_step(candidates, options.max_batch_tokens, options.prefill_chunk);
        const std::vector<int> slots = plan_slots(candidates, plan);
        bool provider_failed = false;
        const std::size_t ready = prepare(slots, provider_failed);
        if (provider_failed) return; // `running` changed under the plan
        // Only sequences whose adapter is resident run this step; the others wait for a later one.
        std::erase_if(plan, [&](const planned_sequence& p) {
            const int s = candidates[std::size_t(p.index)].slot;
            return s >= 0 && std::find(slots.begin(), slots.begin() + std::ptrdiff_t(ready), s) ==
                                 slots.begin() + std::ptrdiff_t(ready);
        });
        if (plan.empty()) {
            // Nothing can run: the first adapter does not fit the provider at all (prepare returned 0).
            if (!slots.empty() && ready == 0)
                fail_slot(slots.front(), "the adapter does not fit in the adapter cache");
            return;
        }

        std::vector<sequence_step> batch;
        batch.reserve(plan.size());
        int prefill_tokens = 0, decode_tokens = 0;
        const auto now = request_state::clock::now();
        for (const planned_sequence& p : plan) {
            request_state& r = *running[std::size_t(p.index)].state;
            r.mark_scheduled(now);
            sequence_step s;
            s.seq_id = running[std::size_t(p.index)].seq;
            s.tokens = r.next_tokens(p.tokens);
            s.adapter = r.slot();
            (r.prefilling() ? prefill_tokens : decode_tokens) += static_cast<int>(s.tokens.size());
            batch.push_back(s);
        }
        // Each sequence's pick is prepared before the step (its sampler's draw), so the forward pass can
        // pick on the device that holds the logits and return only token ids.
        std::vector<token_choice> choices;
        choices.reserve(plan.size());
        for (std::size_t b = 0; b < plan.size(); ++b)
            choices.push_back(running[std::size_t(plan[b].index)].state->choice_after(
                static_cast<int>(batch[b].tokens.size())));
        std::vector<int> picked;
        try {
            picked = model.forward_tokens(cache, batch, provider.get(), choices, usable_vocab);
        } catch (const std::exception& e) {
            // The step's sequences may be half written: fail them, keep serving the others.
            std::vector<std::uint64_t> ids;
            for (const planned_sequence& p : plan)
                ids.push_back(running[std::size_t(p.index)].state->id());
            end_matching(
                [&](const request_state& r) { return std::count(ids.begin(), ids.end(), r.id()) != 0; },
                completion_status::failed, std::string("forward step failed: ") + e.what());
            return;
        }
        std::vector<int> adapters;
        for (const sequence_step& s : batch)
            if (s.adapter >= 0) adapters.push_back(s.adapter);
        std::sort(adapters.begin(), adapters.end());
        const auto distinct = std::unique(adapters.begin(), adapters.end()) - adapters.begin();
        recorder.on_step(prefill_tokens, decode_tokens, static_cast<int>(running.size()),
                         static_cast<int>(distinct));

        std::vector<std::pair<std::uint64_t, std::string>> failed;
        std::vector<std::uint64_t> finished;
        for (std::size_t b = 0; b < plan.size(); ++b) {
            request_state& r = *running[std::size_t(plan[b].index)].state;
            r.mark_fed(static_cast<int>(batch[b].tokens.size()));
            if (r.prefilling()) continue; // a middle chunk: its logits are not needed
            try {
                if (r.accept_token(picked[b])) finished.push_back(r.id());
            } catch (const std::exception& e) {
                failed.emplace_back(r.id(), e.what());
            }
        }
        for (std::size_t i = running.size(); i-- > 0;) {
            const std::uint64_t id = running[i].state->id();
            if (std::find(finished.begin(), finished.end(), id) != finished.end()) {
                retire(i, completion_status::finished, {});
                continue;
            }
            for (const auto& [fid, why] : failed)
                if (fid == id) {
                    retire(i, completion_status::failed, why);
                    break;
                }
        }
        recorder.set_running(static_cast<int>(running.size()));
    }
};

// ---- public methods ---------------------------------------------------------------------------------------
serving_engine::serving_engine(std::shared_ptr<const model_weights> weights,
                               std::shared_ptr<const Tokenizer> tokenizer,
                               std::unique_ptr<AdapterProvider> adapters, engine_options options) {
    if (!weights) throw usage_error(where, "no model weights");
    if (!tokenizer) throw usage_error(where, "no tokenizer");
    m_impl = std::make_unique<impl>(std::move(weights), std::move(tokenizer),
                                    std::shared_ptr<AdapterProvider>(std::move(adapters)), options);
    m_impl->link->engine = m_impl.get();
    m_impl->thread = std::thread([p = m_impl.get()] { p->run(); });
}

serving_engine::~serving_engine() {
    if (m_impl) shutdown(false);
}

std::uint64_t serving_engine::submit(completion_request request) {
    impl& d = *m_impl;
    if (request.prompt.empty()) throw usage_error(where, "the prompt has no tokens (start from BOS)");
    const generation_params& p = request.params;
    if (p.max_tokens < 0) throw usage_error(where, "max_tokens must be >= 0");
    p.sampling.validate();
    const int vocab = d.weights->geometry().vocab_size;
    for (int id : request.prompt)
        if (id < 0 || id >= vocab)
            throw usage_error(where, "prompt token " + std::to_string(id) + " is outside the vocabulary of " +
                                         std::to_string(vocab));
    const int n_prompt = static_cast<int>(request.prompt.size());
    if (std::int64_t(n_prompt) + p.max_tokens > d.context)
        throw usage_error(where, "the prompt (" + std::to_string(n_prompt) + " tokens) plus max_tokens (" +
                                     std::to_string(p.max_tokens) + ") is more than the model's context of " +
                                     std::to_string(d.context));
    const int capacity = std::min(d.context, n_prompt + std::max(p.max_tokens - 1, 0));
    if (d.blocks_for_capacity(capacity) > d.cache.total_blocks())
        throw usage_error(where, "the request needs " + std::to_string(capacity) +
                                     " KV cache positions, but the whole KV budget holds " +
                                     std::to_string(d.cache.max_tokens()));
    std::uint64_t id = 0;
    {
        std::lock_guard lock(d.mutex);
        if (!d.accepting) throw usage_error(where, "the engine is shut down");
        int slot = -1;
        if (!request.adapter.empty()) {
            const auto it = d.slots_by_name.find(request.adapter);
            if (it == d.slots_by_name.end())
                throw usage_error(where, "unknown adapter '" + request.adapter + "'");
            slot = it->second;
        }
        id = d.next_id++;
        d.incoming.push_back(std::make_unique<request_state>(id, std::move(request), slot, capacity,
                                                             d.context, d.usable_vocab, *d.tokenizer));
        if (d.live.empty()) d.progress_ns.store(impl::now_ns(), std::memory_order_relaxed); // idle -> busy
        d.live.insert(id);
        d.pending.store(d.live.size(), std::memory_order_relaxed);
        d.recorder.on_submit();
    }
    d.wake.notify_one();
    return id;
}

bool serving_engine::cancel(std::uint64_t id) {
    impl& d = *m_impl;
    {
        std::lock_guard lock(d.mutex);
        if (!d.live.count(id)) return false;
        d.cancels.insert(id);
    }
    d.wake.notify_one();
    return true;
}

namespace {
template <class T> std::future<T> failed_future(std::exception_ptr e) {
    std::promise<T> p;
    p.set_exception(std::move(e));
    return p.get_future();
}
} // namespace

std::future<adapter_info> serving_engine::add_adapter(const std::filesystem::path& peft_dir,
                                                      const std::string& name) {
    impl& d = *m_impl;
    auto promise = std::make_shared<std::promise<adapter_info>>();
    auto future = promise->get_future();
    {
        std::lock_guard lock(d.mutex);
        if (!d.accepting)
            return failed_future<adapter_info>(
                std::make_exception_ptr(usage_error(where, "the engine is shut down")));
        d.loads.push_back({peft_dir, name, std::move(promise)});
    }
    d.wake.notify_one();
    return future;
}

std::future<bool> serving_engine::remove_adapter(const std::string& name) {
    impl& d = *m_impl;
    auto promise = std::make_shared<std::promise<bool>>();
    auto future = promise->get_future();
    {
        std::lock_guard lock(d.mutex);
        if (!d.accepting)
            return failed_future<bool>(
                std::make_exception_ptr(usage_error(where, "the engine is shut down")));
        d.commands.push_back([&d, promise, name] {
            try {
                if (!d.provider) {
                    promise->set_value(false);
                    return;
                }
                const int slot = d.provider->find(name);
                if (slot < 0) {
                    promise->set_value(false);
                    return;
                }
                if (d.model.device() != "cpu") throw unsupported_error(where, no_device_changes);
                {
                    // No new request can name it from now on; those already sent are in `incoming`.
                    std::lock_guard lock(d.mutex);
                    d.slots_by_name.erase(name);
                    while (!d.incoming.empty()) {
                        d.waiting.push_back(std::move(d.incoming.front()));
                        d.incoming.pop_front();
                    }
                }
                d.end_matching([&](const request_state& r) { return r.slot() == slot; },
                               completion_status::cancelled, "adapter '" + name + "' was removed");
                const bool removed = d.provider->remove(name);
                d.publish_adapters(d.provider->list());
                promise->set_value(removed);
            } catch (...) {
                promise->set_exception(std::current_exception());
            }
        });
    }
    d.wake.notify_one();
    return future;
}

std::vector<adapter_info> serving_engine::adapters() const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->adapter_list;
}

bool serving_engine::has_adapter(std::string_view name) const {
    std::lock_guard lock(m_impl->mutex);
    return m_impl->slots_by_name.find(name) != m_impl->slots_by_name.end();
}

std::string_view serving_engine::adapter_mode() const {
    return m_impl->mode;
}

std::string_view serving_engine::device() const {
    return m_impl->model.device();
}

const std::string& serving_engine::device_note() const {
    return m_impl->chosen.note;
}

metrics_snapshot serving_engine::metrics() const {
    return m_impl->recorder.snapshot();
}

engine_health serving_engine::health() const {
    const impl& d = *m_impl;
    engine_health h;
    h.pending = d.pending.load(std::memory_order_relaxed);
    h.since_progress_s = double(impl::now_ns() - d.progress_ns.load(std::memory_order_relaxed)) * 1e-9;
    if (h.pending == 0) h.since_progress_s = 0;
    h.stopped = d.thread_done.load(std::memory_order_relaxed);
    return h;
}

const Tokenizer& serving_engine::tokenizer() const {
    return *m_impl->tokenizer;
}

const model_weights& serving_engine::weights() const {
    return *m_impl->weights;
}

void serving_engine::shutdown(bool finish_in_flight) {
    impl& d = *m_impl;
    {
        std::lock_guard lock(d.mutex);
        d.accepting = false;
        if (!d.stop_requested) {
            d.stop_requested = true;
            d.finish_in_flight = finish_in_flight;
        } else if (!finish_in_flight) {
            d.finish_in_flight = false; // a later "cancel the rest" overrides an earlier "finish"
        }
    }
    d.wake.notify_all();
    std::lock_guard join(d.join_mutex);
    if (d.thread.joinable()) d.thread.join();
    // Loader threads still running (abandoned) must not reach this engine any more.
    std::lock_guard cut(d.link->mutex);
    d.link->engine = nullptr;
}

} // namespace lorafleet::serve
