// handler_pool: the threads that run request handlers. Threads are started on demand up to `max_threads`
// (an idle one is reused first) and live until stop(); jobs beyond that wait in a FIFO queue. The HTTP
// server keeps two: a small control pool (/health, /metrics, /v1/models) and the completion pool, so a
// busy engine never delays the control routes. Thread-safe; stop() joins (jobs still queued are run
// first, so every posted job runs exactly once).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lorafleet::http {

class handler_pool {
public:
    explicit handler_pool(std::size_t max_threads);
    ~handler_pool(); // stop()
    handler_pool(const handler_pool&) = delete;
    handler_pool& operator=(const handler_pool&) = delete;

    // Queues a job; false (job not kept) after stop().
    bool post(std::function<void()> job);
    // Runs what is queued, then joins every thread. Idempotent.
    void stop();
    std::size_t threads() const;

private:
    void work();

    const std::size_t m_max;
    mutable std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<std::function<void()>> m_jobs;
    std::vector<std::thread> m_threads;
    std::size_t m_idle = 0;
    bool m_stopping = false;
};

} // namespace lorafleet::http
