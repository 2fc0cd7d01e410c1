// watchdog: see the header. The timer is a thread waiting on a condition variable with a deadline.
#include "tests/support/watchdog.hpp"

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace lorafleet::test {

struct watchdog::impl {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
    std::thread thread;
};

watchdog::watchdog(std::string what, std::chrono::seconds limit) : m_impl(new impl) {
    m_impl->thread = std::thread([this, what = std::move(what), limit] {
        std::unique_lock lock(m_impl->mutex);
        if (!m_impl->cv.wait_for(lock, limit, [&] { return m_impl->done; })) {
            std::fprintf(stderr, "WATCHDOG: '%s' did not finish within %lld s: hung (failing the test)\n",
                         what.c_str(), static_cast<long long>(limit.count()));
            std::fflush(stderr);
            std::_Exit(1);
        }
    });
}

watchdog::~watchdog() {
    {
        std::lock_guard lock(m_impl->mutex);
        m_impl->done = true;
    }
    m_impl->cv.notify_all();
    m_impl->thread.join();
    delete m_impl;
}

long stress_iterations(long n) {
    double scale = 1.0;
    if (const char* s = std::getenv("LORAFLEET_STRESS_SCALE")) scale = std::atof(s);
    if (!(scale > 0)) scale = 1.0;
    const long scaled = static_cast<long>(double(n) * scale);
    return scaled < 1 ? 1 : scaled;
}

} // namespace lorafleet::test
