// See child_process.hpp.
#include "bench/soak/child_process.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <regex>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace soak {

namespace {

// fork + exec with stdout and stderr on out_fd (stdin from /dev/null). Returns the pid or -1.
pid_t spawn(const std::filesystem::path& program, const std::vector<std::string>& args, int out_fd) {
    std::vector<std::string> argv_s;
    argv_s.push_back(program.string());
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid != 0) return pid; // parent (or -1)
    // Child: only async-signal-safe calls until exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(out_fd, 2);
    ::execv(argv[0], argv.data());
    const char msg[] = "soak: exec failed\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    ::_exit(127);
}

exit_info decode(int status) {
    exit_info e;
    if (WIFEXITED(status)) {
        e.exited = true;
        e.code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        e.signal = WTERMSIG(status);
    }
    return e;
}

// Waits for pid up to bound (polling); SIGKILL and a final wait after it.
exit_info wait_bounded(pid_t pid, std::chrono::milliseconds bound) {
    const auto start = std::chrono::steady_clock::now();
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return {};
        if (std::chrono::steady_clock::now() - start > bound) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            exit_info e = decode(status);
            e.timed_out = true;
            e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            return e;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    exit_info e = decode(status);
    e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return e;
}

std::string read_head(const std::filesystem::path& file, std::size_t max_bytes) {
    std::ifstream in(file, std::ios::binary);
    std::string s(max_bytes, '\0');
    in.read(s.data(), static_cast<std::streamsize>(max_bytes));
    s.resize(static_cast<std::size_t>(in.gcount()));
    return s;
}

} // namespace

int run_to_completion(const std::filesystem::path& program, const std::vector<std::string>& args,
                      const std::filesystem::path& log, std::chrono::seconds timeout) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    const pid_t pid = spawn(program, args, fd);
    ::close(fd);
    if (pid < 0) return -1;
    const exit_info e = wait_bounded(pid, timeout);
    return e.exited && !e.timed_out ? e.code : -1;
}

std::string capture_output(const std::filesystem::path& program, const std::vector<std::string>& args,
                           std::size_t max_bytes) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return {};
    const pid_t pid = spawn(program, args, fds[1]);
    ::close(fds[1]);
    std::string out;
    if (pid > 0) {
        char buf[4096];
        for (;;) {
            pollfd p{fds[0], POLLIN, 0};
            if (::poll(&p, 1, 30000) <= 0) break;
            const ssize_t n = ::read(fds[0], buf, sizeof buf);
            if (n <= 0) break;
            if (out.size() < max_bytes)
                out.append(buf, std::min<std::size_t>(static_cast<std::size_t>(n), max_bytes - out.size()));
        }
        wait_bounded(pid, std::chrono::seconds(30));
    }
    ::close(fds[0]);
    return out;
}

server_process::~server_process() {
    if (m_pid > 0 && !m_reaped) {
        ::kill(m_pid, SIGKILL);
        int status = 0;
        ::waitpid(m_pid, &status, 0);
    }
}

void server_process::start(const std::filesystem::path& program, const std::vector<std::string>& args,
                           const std::filesystem::path& log, std::chrono::seconds timeout) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot create the server log " + log.string());
    m_pid = spawn(program, args, fd);
    ::close(fd);
    if (m_pid < 0) throw std::runtime_error("fork failed: " + std::string(std::strerror(errno)));
    const std::regex listening(R"(listening on http://[^\s:]+:(\d+))");
    const auto start_time = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start_time < timeout) {
        const std::string text = read_head(log, 1 << 20);
        std::smatch m;
        if (std::regex_search(text, m, listening)) {
            m_port = std::stoi(m[1].str());
            return;
        }
        exit_info e;
        if (has_exited(e))
            throw std::runtime_error("the server exited before listening (exit code " +
                                     std::to_string(e.code) + ", signal " + std::to_string(e.signal) +
                                     "); see " + log.string());
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("the server printed no 'listening on' line within " +
                             std::to_string(timeout.count()) + " s; see " + log.string());
}

bool server_process::has_exited(exit_info& info) {
    if (m_reaped) {
        info = m_exit;
        return true;
    }
    if (m_pid <= 0) return false;
    int status = 0;
    if (::waitpid(m_pid, &status, WNOHANG) != m_pid) return false;
    m_reaped = true;
    m_exit = decode(status);
    info = m_exit;
    return true;
}

long server_process::rss_kib() const {
    if (m_pid <= 0 || m_reaped) return -1;
    std::ifstream in("/proc/" + std::to_string(m_pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return -1;
}

exit_info server_process::terminate(std::chrono::seconds bound) {
    exit_info e;
    if (has_exited(e)) return e;
    ::kill(m_pid, SIGTERM);
    m_exit = wait_bounded(m_pid, bound);
    m_reaped = true;
    return m_exit;
}

} // namespace soak
