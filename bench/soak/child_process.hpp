// Child processes for the soak benchmark (fork/exec, POSIX): a tool run to completion (synth, compress) and
// the `serve` process, whose stdout and stderr go to a log file, whose port is read from its
// "listening on http://HOST:PORT" line, whose resident memory is read from /proc/PID/status, and which is
// stopped with SIGTERM and a bounded wait. The child gets SIGKILL if the benchmark dies first.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

namespace soak {

// Runs program with args, output appended to log; returns its exit code, or -1 (it could not start, was
// killed by a signal, or ran past the timeout and was killed).
int run_to_completion(const std::filesystem::path& program, const std::vector<std::string>& args,
                      const std::filesystem::path& log, std::chrono::seconds timeout);

// Everything the program prints (stdout and stderr) for args, at most max_bytes; "" if it cannot start.
std::string capture_output(const std::filesystem::path& program, const std::vector<std::string>& args,
                           std::size_t max_bytes = 1 << 20);

struct exit_info {
    bool exited = false;    // ended on its own (exit code valid) rather than by a signal
    int code = -1;          // exit code when exited
    int signal = 0;         // the signal that ended it otherwise
    bool timed_out = false; // did not end within the wait, and was killed
    double seconds = 0;     // how long the wait took
};

class server_process {
public:
    server_process() = default;
    server_process(const server_process&) = delete;
    server_process& operator=(const server_process&) = delete;
    ~server_process(); // SIGKILL if still running

    // Starts program args (stdout+stderr to log) and waits for the "listening on http://" line.
    // Throws std::runtime_error (with the log's path) if it exits or stays silent past the timeout.
    void start(const std::filesystem::path& program, const std::vector<std::string>& args,
               const std::filesystem::path& log, std::chrono::seconds timeout);

    int port() const { return m_port; }
    pid_t pid() const { return m_pid; }

    // True (and info filled) if the process has ended; never blocks.
    bool has_exited(exit_info& info);

    // VmRSS in KiB, or -1 when the process is gone.
    long rss_kib() const;

    // SIGTERM, then waits up to bound; SIGKILL after it.
    exit_info terminate(std::chrono::seconds bound);

private:
    pid_t m_pid = -1;
    int m_port = 0;
    bool m_reaped = false;
    exit_info m_exit;
};

} // namespace soak
