// worker_pool: see the header.
//
// Why a late worker cannot take part in the wrong loop. A loop is the triple (generation g, fn_g, n_g).
// run() writes all three under m_mutex; a worker reads all three under the same mutex when it wakes, so
// its copy of (g, fn, n) is always one loop's, never a mix of two. Items are then claimed with a
// compare-and-swap on m_counter = (generation << 32) | next index, which succeeds only while the counter
// still holds generation g and only for an index below the worker's own n_g. So every claimed index is
// an item of loop g, each exactly once, run with fn_g. Loop g's run() cannot return before all n_g of
// them have completed (it waits for m_finished == n_g), so fn_g is alive whenever it is called, and
// m_finished is reset for loop g + 1 only after every increment of loop g has happened.
//
// The bug this replaces: drain() compared the claimed index against the shared m_n, which run() had
// already set to the NEXT loop's size while m_counter still held the previous generation. A worker late
// from loop g could then claim index n_g of loop g, run it with whichever m_fn it saw and add one to the
// next loop's m_finished: the caller could see n + 1 without ever seeing n and wait forever (or run the
// old function past its end and crash). tests/engine/serve/test_worker_pool.cpp reproduces it.
//
// The 32-bit generation wraps after 2^32 loops; a claim could only go wrong if one worker stayed
// descheduled between reading the counter and its compare-and-swap for exactly 2^32 loops.
#include "engine/serve/scheduling/worker_pool.hpp"

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

void worker_pool::drain(const loop& l, int worker) {
    for (;;) {
        std::uint64_t v = m_counter.load(std::memory_order_acquire);
        std::uint32_t index;
        do {
            if (std::uint32_t(v >> 32) != l.generation) return; // a later loop: not ours to take
            index = std::uint32_t(v);
            if (index >= l.n) return; // this loop's items are all taken
        } while (
            !m_counter.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel, std::memory_order_acquire));
        try {
            (*l.fn)(index, worker);
        } catch (...) {
            std::lock_guard lock(m_mutex);
            if (!m_error) m_error = std::current_exception();
        }
        if (m_finished.fetch_add(1, std::memory_order_acq_rel) + 1 == l.n) m_finished.notify_all();
    }
}

void worker_pool::worker_main(int index) {
    std::uint32_t seen = 0;
    for (;;) {
        loop l;
        {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, [&] { return m_stop || m_loop.generation != seen; });
            if (m_stop) return;
            l = m_loop;
            seen = l.generation;
        }
        drain(l, index);
    }
}

void worker_pool::run(std::size_t n, const std::function<void(std::size_t, int)>& fn) {
    if (n == 0) return;
    if (m_workers.empty() || n == 1) {
        for (std::size_t i = 0; i < n; ++i)
            fn(i, 0);
        return;
    }
    loop l;
    {
        std::lock_guard lock(m_mutex);
        l.generation = m_loop.generation + 1;
        l.fn = &fn;
        l.n = static_cast<std::uint32_t>(n);
        m_loop = l;
        m_error = nullptr;
        m_finished.store(0, std::memory_order_relaxed);
        m_counter.store(std::uint64_t(l.generation) << 32, std::memory_order_release);
    }
    m_wake.notify_all();
    drain(l, 0);
    // Every item has been taken; wait for the ones still running on workers.
    for (std::uint32_t done = m_finished.load(std::memory_order_acquire); done != l.n;
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
