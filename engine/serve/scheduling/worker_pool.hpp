// A persistent pool of worker threads for the forward pass's parallel loops (attention over (token, KV
// head) items, blocks of weight rows in gemm_nt). Items are handed out dynamically through one atomic
// counter, because their costs differ (causal attention: a token at position p does p units of work),
// and the calling thread takes items too. The caller waits only for items that were taken, never for a
// worker that has not woken up yet: on a busy machine a sleeping worker simply takes no part in the loop,
// so a loop never costs more than the caller doing everything alone plus the items in flight.
// Not reentrant (one loop at a time, fn must not call run()); exceptions thrown by fn are rethrown in the
// caller after the loop has drained.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lorafleet::serve {

class worker_pool {
public:
    // threads <= 0: one per hardware thread.
    explicit worker_pool(int threads = 0);
    ~worker_pool();
    worker_pool(const worker_pool&) = delete;
    worker_pool& operator=(const worker_pool&) = delete;

    int size() const { return static_cast<int>(m_workers.size()) + 1; }
    // Calls fn(item, worker) for every item in [0, n); worker is in [0, size()) and identifies the thread,
    // so fn can use per-worker scratch memory.
    void run(std::size_t n, const std::function<void(std::size_t, int)>& fn);

private:
    // One parallel loop; written by run() and copied by a waking worker, both under m_mutex.
    struct loop {
        std::uint32_t generation = 0;
        const std::function<void(std::size_t, int)>* fn = nullptr;
        std::uint32_t n = 0;
    };

    void worker_main(int index);
    void drain(const loop& l, int worker);

    std::vector<std::thread> m_workers;
    loop m_loop; // the latest loop (under m_mutex)
    // (generation << 32) | next item index: a worker can only take items of the loop it copied.
    std::atomic<std::uint64_t> m_counter{0};
    std::atomic<std::uint32_t> m_finished{0}; // items of the current loop that have completed
    std::mutex m_mutex;
    std::condition_variable m_wake;
    bool m_stop = false;
    std::exception_ptr m_error;
};

} // namespace lorafleet::serve
