// worker_pool: see the header. Workers sleep on a condition variable until a new generation is published,
// then claim items with a compare-and-swap on the packed (generation, index) counter, so a worker that
// wakes late (after its loop ended, or during a later one) can never run an item with the wrong function.
// The caller waits on m_finished, which counts completed items only.
#include "engine/serve/worker_pool.hpp"

#include <algorithm>
#include <utility>

namespace lorafleet::serve {

worker_pool::worker_pool(int threads) {
    if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < threads; ++i)
        m_workers.emplace_back([this, i] { worker_main(i); });
}

worker_pool::~worker_pool() {
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_wake.notify_all();
    for (auto& t : m_workers)
        t.join();
}

void worker_pool::drain(std::uint32_t generation, int worker) {
    for (;;) {
        std::uint64_t v = m_counter.load(std::memory_order_acquire);
        std::uint32_t index;
        do {
            if (std::uint32_t(v >> 32) != generation) return; // a later loop: not ours to take
            index = std::uint32_t(v);
            if (index >= m_n.load(std::memory_order_relaxed)) return;
        } while (
            !m_counter.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire));
        try {
            (*m_fn)(index, worker);
        } catch (...) {
            std::lock_guard lock(m_mutex);
            if (!m_error) m_error = std::current_exception();
        }
        if (m_finished.fetch_add(1, std::memory_order_acq_rel) + 1 == m_n.load(std::memory_order_relaxed))
            m_finished.notify_all();
    }
}

void worker_pool::worker_main(int index) {
    std::uint32_t seen = 0;
    for (;;) {
        std::uint32_t generation;
        {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, [&] { return m_stop || m_generation != seen; });
            if (m_stop) return;
            seen = generation = m_generation;
        }
        drain(generation, index);
    }
}

void worker_pool::run(std::size_t n, const std::function<void(std::size_t, int)>& fn) {
    if (n == 0) return;
    if (m_workers.empty() || n == 1) {
        for (std::size_t i = 0; i < n; ++i)
            fn(i, 0);
        return;
    }
    std::uint32_t generation;
    {
        std::lock_guard lock(m_mutex);
        generation = ++m_generation;
        m_fn = &fn;
        m_n.store(static_cast<std::uint32_t>(n), std::memory_order_relaxed);
        m_error = nullptr;
        m_finished.store(0, std::memory_order_relaxed);
        m_counter.store(std::uint64_t(generation) << 32, std::memory_order_release);
    }
    m_wake.notify_all();
    drain(generation, 0);
    // Every item has been taken; wait for the ones still running on workers.
    for (std::uint32_t done = m_finished.load(std::memory_order_acquire); done != n;
         done = m_finished.load(std::memory_order_acquire))
        m_finished.wait(done, std::memory_order_acquire);
    std::exception_ptr error;
    {
        std::lock_guard lock(m_mutex);
        error = std::exchange(m_error, nullptr);
    }
    if (error) std::rethrow_exception(error);
}

} // namespace lorafleet::serve
