// A ModuleSource decorator that overlaps loading with compute: after load(m) hands module m to the
// caller, it starts loading the module the caller is predicted to ask for next — m + 1 (wrapping to 0
// for the next pass), or whatever expect() said — on ONE background thread, so the streaming passes of
// the fleet compressor fit module m while module m + 1 is being read and converted.
// Invariants:
//  - Batches are exactly the wrapped source's (the same object its load() returned; no copy, no
//    reordering), whatever the access order: a prefetch of the wrong module is discarded and the asked
//    module is loaded on the spot.
//  - At most one prefetched batch is held, so resident memory is the caller's module plus the next one.
//  - An exception thrown by the wrapped source's load(m) — in the background or not — surfaces from the
//    load(m) call that asks for m, never on the background thread and never from another call; a
//    prefetched error for a module nobody asks for is dropped with its batch.
//  - The wrapped source's load() is called from one thread at a time (the background thread or the
//    caller's, never both), so a source need not be thread-safe for load(). Its const metadata
//    (adapter_count, adapter_name, module_count, module) is forwarded directly and may run while a
//    background load is in flight: it must not depend on load()'s state (both engine sources read
//    data fixed at construction).
// Thread affinity: the decorator itself is used from one thread at a time (the caller's); it owns its
// worker thread. The destructor discards a prefetch that has not started and joins one in flight, so it
// waits for at most one load of the wrapped source.
#pragma once

#include "engine/compress/module_source.hpp"

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

namespace lorafleet::compress {

class PrefetchingModuleSource final : public ModuleSource {
public:
    // `source` must outlive the decorator.
    explicit PrefetchingModuleSource(ModuleSource& source);
    ~PrefetchingModuleSource() override;
    PrefetchingModuleSource(const PrefetchingModuleSource&) = delete;
    PrefetchingModuleSource& operator=(const PrefetchingModuleSource&) = delete;

    std::size_t adapter_count() const override { return m_source.adapter_count(); }
    std::string adapter_name(std::size_t adapter) const override { return m_source.adapter_name(adapter); }
    std::size_t module_count() const override { return m_source.module_count(); }
    module_shape module(std::size_t m) const override { return m_source.module(m); }

    // Module m: the prefetched batch when it is m (waiting for it if it is still loading), else loaded
    // now. Before returning, starts the prefetch of the predicted next module (the background thread has
    // taken that request when this returns, so it loads while the caller computes). Rethrows the wrapped
    // source's error for m.
    module_batch load(std::size_t m) override;

    // The caller's next load() will be followed by a load of `next` (instead of the default m + 1): the
    // prefetch started by that next load() is for `next`. Only one hint is kept (the latest); it is used
    // up by that load(). Out-of-range hints are ignored at use (no prefetch).
    void expect(std::size_t next);

    // Called on the background thread with every batch it loaded, before that batch can be handed out
    // (the load() that takes it waits for the listener): the fleet driver passes it to
    // CompressBackend::stage so the device upload of module m + 1 overlaps module m. Not called for
    // batches loaded on the caller's thread, nor for failed loads; an exception from it is dropped.
    // Set it before the first load().
    void on_prefetched(std::function<void(const module_batch&)> listener);

    // How many wrapped loads ran in the background / how many of them the caller got (tests, logs).
    std::size_t prefetches_started() const;
    std::size_t prefetch_hits() const;

private:
    struct prefetched {
        std::size_t module = 0;
        std::optional<module_batch> batch;
        std::exception_ptr error;
    };
    void worker();
    void schedule(std::unique_lock<std::mutex>& lk, std::size_t next); // lk holds m_mutex

    ModuleSource& m_source;
    mutable std::mutex m_mutex;
    std::condition_variable m_cv;
    std::optional<std::size_t> m_request;  // a prefetch the worker has not started
    std::optional<std::size_t> m_inflight; // the module the worker is loading now
    std::optional<prefetched> m_ready;     // the finished prefetch (at most one)
    std::optional<std::size_t> m_hint;     // expect()
    std::function<void(const module_batch&)> m_on_prefetched;
    bool m_stop = false;
    std::size_t m_started = 0;
    std::size_t m_hits = 0;
    std::thread m_thread; // last: starts after every member above is constructed
};

} // namespace lorafleet::compress
