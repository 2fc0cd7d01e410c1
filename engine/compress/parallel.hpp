// Threading helpers for the CPU backend: a small fixed-size worker pool with a STATIC partition of
// index ranges (so per-thread partial sums are reduced in a fixed order and results do not depend on
// scheduling), and a scope guard that pins OpenBLAS's own thread count. Policy: the backend runs every
// BLAS / LAPACK call single-threaded and parallelizes itself (over adapters, or over column blocks of a
// big product). Why not OpenBLAS threads: its idle workers spin (sched_yield) for a while after every
// threaded call and then compete with our workers; and our static partition keeps results independent
// of scheduling. OpenBLAS's thread count is process-wide, and guards live on several threads at once (the
// module prefetch thread loads while the fitting thread computes), so guards are counted: the first
// one alive sets the count, the last one to end restores what was there before; in between nobody
// changes it (every guard in the engine asks for 1 thread; a later guard's own request is ignored).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lorafleet::compress {

// Sets OpenBLAS's thread count while any guard is alive (see above), then restores the previous value.
class blas_threads_guard {
public:
    explicit blas_threads_guard(int threads);
    ~blas_threads_guard();
    blas_threads_guard(const blas_threads_guard&) = delete;
    blas_threads_guard& operator=(const blas_threads_guard&) = delete;
};

// Number of hardware threads (at least 1).
int hardware_threads();

// A pool of `threads - 1` workers plus the calling thread. parallel_for(n, fn) calls fn(begin, end, t)
// for the static chunk t of [0, n); exceptions from any chunk are rethrown in the caller (the first
// one by chunk order). Not reentrant: do not call parallel_for from inside fn. `flops` is the caller's
// estimate of the whole loop's work: below serial_flops the loop runs inline on the caller (waking
// workers costs tens of microseconds), as chunk 0, so `t` is always < size().
class thread_pool {
public:
    explicit thread_pool(int threads);
    ~thread_pool();
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    int size() const { return m_size; }
    // Runs with OpenBLAS pinned to one thread for the duration (see the file comment).
    static constexpr double serial_flops = 2e6;
    void parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t, int)>& fn,
                      double flops = 1e300);

private:
    void worker(int index);

    int m_size = 1;
    std::vector<std::thread> m_workers;
    std::mutex m_mutex;
    std::condition_variable m_start;
    std::condition_variable m_done;
    const std::function<void(std::size_t, std::size_t, int)>* m_fn = nullptr;
    std::size_t m_n = 0;
    std::size_t m_generation = 0;
    int m_pending = 0;
    bool m_stop = false;
    std::vector<std::exception_ptr> m_errors;
};

} // namespace lorafleet::compress
