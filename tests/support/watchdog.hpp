// A watchdog for tests that would hang on a concurrency bug: if the guarded scope does not end within
// the limit, it prints what was running and ends the process with exit code 1 (a failed test, never a
// hung CI job). Scale the work, not the limit: LORAFLEET_STRESS_SCALE (default 1) multiplies iteration
// counts, e.g. 0.1 under ThreadSanitizer.
#pragma once

#include <chrono>
#include <string>

namespace lorafleet::test {

class watchdog {
public:
    watchdog(std::string what, std::chrono::seconds limit);
    ~watchdog(); // disarms
    watchdog(const watchdog&) = delete;
    watchdog& operator=(const watchdog&) = delete;

private:
    struct impl;
    impl* m_impl;
};

// LORAFLEET_STRESS_SCALE times n, at least 1.
long stress_iterations(long n);

} // namespace lorafleet::test
