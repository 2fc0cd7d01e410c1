// PrefetchingModuleSource: one worker thread, one request slot, one result slot, all under one mutex.
// The caller and the worker hand the wrapped source back and forth: the caller calls the wrapped load()
// only while no request is queued and nothing is in flight, and the worker only between taking a
// request and publishing its result.
#include "engine/compress/prefetching_module_source.hpp"

#include <utility>

namespace lorafleet::compress {

PrefetchingModuleSource::PrefetchingModuleSource(ModuleSource& source)
    : m_source(source), m_thread([this] { worker(); }) {}

PrefetchingModuleSource::~PrefetchingModuleSource() {
    {
        std::lock_guard lk(m_mutex);
        m_stop = true;
        m_request.reset(); // not started: discarded
    }
    m_cv.notify_all();
    m_thread.join(); // one in flight: finishes, and its result is dropped with m_ready
}

void PrefetchingModuleSource::worker() {
    std::unique_lock lk(m_mutex);
    for (;;) {
        m_cv.wait(lk, [&] { return m_stop || m_request.has_value(); });
        if (m_stop) return;
        prefetched p;
        p.module = *m_request;
        m_request.reset();
        m_inflight = p.module;
        ++m_started;
        m_cv.notify_all(); // load() waits until its request has started
        const auto on_prefetched = m_on_prefetched;
        lk.unlock();
        try {
            p.batch.emplace(m_source.load(p.module));
        } catch (...) {
            p.error = std::current_exception(); // rethrown by the load() that asks for this module
        }
        if (p.batch && on_prefetched) {
            try {
                on_prefetched(*p.batch);
            } catch (...) {
                // A hint's failure is not the module's: the batch is handed out as loaded.
            }
        }
        lk.lock();
        m_inflight.reset();
        m_ready = std::move(p);
        m_cv.notify_all();
    }
}

void PrefetchingModuleSource::schedule(std::unique_lock<std::mutex>& lk, std::size_t next) {
    if (next >= m_source.module_count()) return;
    m_request = next;
    m_cv.notify_all();
    // Return only once the worker has taken the request, so the next module is loading while the
    // caller computes (and tests can observe that ordering deterministically).
    m_cv.wait(lk, [&] { return !m_request.has_value() || m_stop; });
}

module_batch PrefetchingModuleSource::load(std::size_t m) {
    std::unique_lock lk(m_mutex);
    if (m_request && *m_request != m) m_request.reset(); // a wrong guess that has not started yet
    // The wrapped source is ours once nothing is queued or in flight (a wrong guess in flight is waited
    // for: the source may be used from one thread at a time).
    m_cv.wait(lk, [&] { return !m_request.has_value() && !m_inflight.has_value(); });
    std::optional<prefetched> got;
    if (m_ready && m_ready->module == m) {
        got = std::move(m_ready);
        ++m_hits;
    }
    m_ready.reset(); // a wrong guess (or its error) is dropped
    if (!got) {
        lk.unlock();
        got.emplace();
        got->module = m;
        try {
            got->batch.emplace(m_source.load(m));
        } catch (...) {
            got->error = std::current_exception();
        }
        lk.lock();
    }
    const std::size_t count = m_source.module_count();
    const std::size_t next = m_hint ? *m_hint : (count > 0 ? (m + 1) % count : 0);
    m_hint.reset();
    schedule(lk, next);
    lk.unlock();
    if (got->error) std::rethrow_exception(got->error);
    return std::move(*got->batch);
}

void PrefetchingModuleSource::on_prefetched(std::function<void(const module_batch&)> listener) {
    std::lock_guard lk(m_mutex);
    m_on_prefetched = std::move(listener);
}

void PrefetchingModuleSource::expect(std::size_t next) {
    std::lock_guard lk(m_mutex);
    m_hint = next;
}

std::size_t PrefetchingModuleSource::prefetches_started() const {
    std::lock_guard lk(m_mutex);
    return m_started;
}

std::size_t PrefetchingModuleSource::prefetch_hits() const {
    std::lock_guard lk(m_mutex);
    return m_hits;
}

} // namespace lorafleet::compress
