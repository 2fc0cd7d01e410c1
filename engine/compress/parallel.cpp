// Implementation of the worker pool and the OpenBLAS thread guard (see parallel.hpp for the policy).
#include "engine/compress/parallel.hpp"

#include <algorithm>
#include <mutex>
#include <utility>

extern "C" {
// Declared here rather than through <cblas.h> so this file does not depend on which cblas.h the
// alternatives system points at; the engine links OpenBLAS (CMake BLA_VENDOR=OpenBLAS).
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
}

namespace lorafleet::compress {

namespace {
std::mutex g_blas_mutex;
int g_blas_guards = 0;   // guards alive, on any thread
int g_blas_previous = 0; // the count before the first of them
} // namespace

blas_threads_guard::blas_threads_guard(int threads) {
    std::lock_guard lock(g_blas_mutex);
    if (g_blas_guards++ == 0) {
        g_blas_previous = openblas_get_num_threads();
        openblas_set_num_threads(std::max(1, threads));
    }
}

blas_threads_guard::~blas_threads_guard() {
    std::lock_guard lock(g_blas_mutex);
    if (--g_blas_guards == 0) openblas_set_num_threads(g_blas_previous);
}

int hardware_threads() {
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

thread_pool::thread_pool(int threads) : m_size(std::max(1, threads)) {
    m_workers.reserve(static_cast<std::size_t>(m_size - 1));
    for (int t = 1; t < m_size; ++t)
        m_workers.emplace_back([this, t] { worker(t); });
}

thread_pool::~thread_pool() {
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_start.notify_all();
    for (auto& w : m_workers)
        w.join();
}

namespace {
std::pair<std::size_t, std::size_t> chunk(std::size_t n, int parts, int t) {
    const auto p = static_cast<std::size_t>(parts), i = static_cast<std::size_t>(t);
    return {n * i / p, n * (i + 1) / p};
}
} // namespace

void thread_pool::worker(int index) {
    std::size_t seen = 0;
    for (;;) {
        const std::function<void(std::size_t, std::size_t, int)>* fn = nullptr;
        std::size_t n = 0;
        {
            std::unique_lock lock(m_mutex);
            m_start.wait(lock, [&] { return m_stop || m_generation != seen; });
            if (m_stop) return;
            seen = m_generation;
            fn = m_fn;
            n = m_n;
        }
        std::exception_ptr err;
        const auto [b, e] = chunk(n, m_size, index);
        try {
            if (b < e) (*fn)(b, e, index);
        } catch (...) {
            err = std::current_exception();
        }
        {
            std::lock_guard lock(m_mutex);
            m_errors[static_cast<std::size_t>(index)] = std::move(err); // no reference left on this thread
            if (--m_pending == 0) m_done.notify_one();
        }
    }
}

void thread_pool::parallel_for(std::size_t n, const std::function<void(std::size_t, std::size_t, int)>& fn,
                               double flops) {
    if (n == 0) return;
    blas_threads_guard one_blas_thread(1);
    if (m_size == 1 || n == 1 || flops < serial_flops) {
        fn(0, n, 0);
        return;
    }
    {
        std::lock_guard lock(m_mutex);
        m_fn = &fn;
        m_n = n;
        m_pending = m_size - 1;
        m_errors.assign(static_cast<std::size_t>(m_size), nullptr);
        ++m_generation;
    }
    m_start.notify_all();
    std::exception_ptr mine;
    const auto [b, e] = chunk(n, m_size, 0);
    try {
        if (b < e) fn(b, e, 0);
    } catch (...) {
        mine = std::current_exception();
    }
    {
        std::unique_lock lock(m_mutex);
        m_done.wait(lock, [&] { return m_pending == 0; });
        m_errors[0] = std::move(mine);
    }
    for (const auto& err : m_errors)
        if (err) std::rethrow_exception(err);
}

} // namespace lorafleet::compress
