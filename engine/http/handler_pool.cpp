// The on-demand handler threads (see handler_pool.hpp).
#include "engine/http/handler_pool.hpp"

#include <algorithm>

namespace lorafleet::http {

handler_pool::handler_pool(std::size_t max_threads) : m_max(std::max<std::size_t>(1, max_threads)) {}

handler_pool::~handler_pool() {
    stop();
}

bool handler_pool::post(std::function<void()> job) {
    std::lock_guard lock(m_mutex);
    if (m_stopping) return false;
    m_jobs.push_back(std::move(job));
    if (m_idle >= m_jobs.size() || m_threads.size() >= m_max) {
        m_cv.notify_one();
    } else {
        m_threads.emplace_back([this] { work(); });
    }
    return true;
}

void handler_pool::work() {
    std::unique_lock lock(m_mutex);
    while (true) {
        ++m_idle;
        m_cv.wait(lock, [&] { return !m_jobs.empty() || m_stopping; });
        --m_idle;
        if (m_jobs.empty()) return; // stopping, nothing left
        auto job = std::move(m_jobs.front());
        m_jobs.pop_front();
        lock.unlock();
        try {
            job();
        } catch (...) {
            // A handler's exceptions are its own business; the pool thread keeps serving.
        }
        job = nullptr; // destroy captures outside the lock
        lock.lock();
    }
}

void handler_pool::stop() {
    std::vector<std::thread> threads;
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
        threads.swap(m_threads);
        m_cv.notify_all();
    }
    for (auto& t : threads)
        if (t.joinable()) t.join();
}

std::size_t handler_pool::threads() const {
    std::lock_guard lock(m_mutex);
    return m_threads.size();
}

} // namespace lorafleet::http
