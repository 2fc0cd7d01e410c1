// Atomic file replacement with POSIX calls. The temporary `.<name>.tmp-XXXXXX` lives in the target's
// folder so that rename() stays within one filesystem (and is therefore atomic). Invariant: while the
// writer is not committed, m_temp names a file that belongs to us and is removed on failure or
// destruction; after a failure m_fd is -1 and every further call throws.
#include "engine/io/atomic_file.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lorafleet::io {
namespace {

std::filesystem::path folder_of(const std::filesystem::path& target) {
    const auto parent = target.parent_path();
    return parent.empty() ? std::filesystem::path(".") : parent;
}

[[noreturn]] void throw_write_error(const std::filesystem::path& target, int err, std::string_view step) {
    throw io_error(path_string(target),
                   std::string("cannot write: ") + std::strerror(err) + " (" + std::string(step) + ")");
}

std::string temp_prefix(const std::filesystem::path& target) {
    return "." + target.filename().string() + ".tmp-";
}

std::string temp_pattern(const std::filesystem::path& target) {
    return (folder_of(target) / (temp_prefix(target) + std::to_string(::getpid()) + "-XXXXXX")).string();
}

// LORAFLEET_TEST_FAIL_WRITE_AFTER: bytes this process may still write before writes fail (-1: no limit).
std::atomic<long long>& write_budget() {
    static std::atomic<long long> budget = [] {
        const char* v = std::getenv("LORAFLEET_TEST_FAIL_WRITE_AFTER");
        return v && *v ? std::atoll(v) : -1LL;
    }();
    return budget;
}

// How many of `want` bytes may be written now under the test budget; 0 means "disk full".
std::size_t allowed_bytes(std::size_t want) {
    auto& budget = write_budget();
    long long left = budget.load();
    if (left < 0) return want;
    while (true) {
        const long long take = std::min<long long>(left, static_cast<long long>(want));
        if (budget.compare_exchange_weak(left, left - take)) return static_cast<std::size_t>(take);
    }
}

} // namespace

atomic_file_writer::atomic_file_writer(std::filesystem::path target) : m_target(std::move(target)) {
    const auto name = m_target.filename();
    if (name.empty() || name == "." || name == "..")
        throw io_error(path_string(m_target), "cannot write: the path does not name a file");
    const auto folder = folder_of(m_target);
    std::string pattern = temp_pattern(m_target);
    const int fd = ::mkstemp(pattern.data()); // replaces the X's in place
    if (fd < 0) throw_write_error(m_target, errno, "creating a temporary file in " + folder.string());
    m_fd = fd;
    m_temp = pattern;
    // mkstemp creates 0600; a finished file should be readable like any other written file.
    if (::fchmod(m_fd, 0644) != 0 || ::fcntl(m_fd, F_SETFD, FD_CLOEXEC) != 0) {
        const int err = errno;
        ::close(m_fd);
        ::unlink(m_temp.c_str());
        m_fd = -1;
        throw_write_error(m_target, err, "setting up the temporary file");
    }
}

atomic_file_writer::~atomic_file_writer() {
    if (m_committed) return;
    if (m_fd >= 0) ::close(m_fd);
    if (!m_temp.empty()) ::unlink(m_temp.c_str());
}

void atomic_file_writer::write(std::span<const std::byte> data) {
    if (m_fd < 0)
        throw io_error(path_string(m_target), "cannot write: the writer was committed or failed earlier");
    const std::byte* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
        const std::size_t chunk = allowed_bytes(left);
        const ssize_t n = chunk == 0 ? (errno = ENOSPC, -1) : ::write(m_fd, p, chunk);
        if (n < 0 && errno == EINTR && chunk > 0) continue;
        if (n <= 0) {
            const int err = n < 0 ? errno : ENOSPC; // write() returning 0 for a non-empty buffer: no room
            ::close(m_fd);
            ::unlink(m_temp.c_str());
            m_fd = -1;
            m_temp.clear();
            throw_write_error(m_target, err, "writing the temporary file");
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
}

void atomic_file_writer::write(std::string_view text) {
    write(std::as_bytes(std::span<const char>(text.data(), text.size())));
}

void atomic_file_writer::commit() {
    if (m_fd < 0)
        throw io_error(path_string(m_target), "cannot write: the writer was committed or failed earlier");
    const auto fail = [&](int err, std::string_view step) {
        if (m_fd >= 0) ::close(m_fd);
        ::unlink(m_temp.c_str());
        m_fd = -1;
        m_temp.clear();
        throw_write_error(m_target, err, step);
    };
    int rc;
    do {
        rc = ::fsync(m_fd);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) fail(errno, "flushing the temporary file to disk");
    // close() can report a deferred write error (NFS); it must not be retried on EINTR (Linux closes anyway).
    const int fd = m_fd;
    m_fd = -1;
    if (::close(fd) != 0 && errno != EINTR) fail(errno, "closing the temporary file");
    if (::rename(m_temp.c_str(), m_target.c_str()) != 0)
        fail(errno, "renaming the temporary file over the target");
    m_committed = true;
    m_temp.clear();

    // Make the rename itself durable. Some filesystems cannot fsync a folder (EINVAL): the data is
    // already in place, so only report real I/O errors.
    const auto folder = folder_of(m_target);
    const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) throw_write_error(m_target, errno, "opening the folder to flush the rename");
    do {
        rc = ::fsync(dir);
    } while (rc != 0 && errno == EINTR);
    const int err = errno;
    ::close(dir);
    if (rc != 0 && err != EINVAL && err != ENOTSUP)
        throw_write_error(m_target, err, "flushing the folder to disk");
}

void write_file_atomic(const std::filesystem::path& target, std::span<const std::byte> data) {
    atomic_file_writer w(target);
    w.write(data);
    w.commit();
}

void write_file_atomic(const std::filesystem::path& target, std::string_view text) {
    atomic_file_writer w(target);
    w.write(text);
    w.commit();
}

std::filesystem::path make_staging_dir(const std::filesystem::path& target) {
    const auto name = target.filename();
    if (name.empty() || name == "." || name == "..")
        throw io_error(path_string(target), "cannot write: the path does not name a folder");
    std::error_code ec;
    std::filesystem::create_directories(folder_of(target), ec);
    std::string pattern = temp_pattern(target);
    if (!::mkdtemp(pattern.data()))
        throw io_error(path_string(target),
                       std::string("cannot create a staging folder: ") + std::strerror(errno));
    ::chmod(pattern.c_str(), 0755);
    return pattern;
}

std::size_t remove_stale_staging(const std::filesystem::path& target, std::chrono::seconds max_age) {
    namespace fs = std::filesystem;
    const auto prefix = temp_prefix(target);
    std::size_t removed = 0;
    std::error_code ec;
    fs::directory_iterator it(folder_of(target), ec), end;
    for (; !ec && it != end; it.increment(ec)) {
        const std::string entry = it->path().filename().string();
        if (entry.size() <= prefix.size() || entry.compare(0, prefix.size(), prefix) != 0) continue;
        // ".<name>.tmp-<pid>-XXXXXX": the pid, when the suffix has that form.
        const std::string tail = entry.substr(prefix.size());
        long pid = -1;
        if (const auto dash = tail.find('-'); dash != std::string::npos && dash > 0 && dash < 12) {
            char* stop = nullptr;
            const long v = std::strtol(tail.c_str(), &stop, 10);
            if (stop == tail.c_str() + dash && v > 0) pid = v;
        }
        bool stale = false;
        if (pid > 0 && pid != long(::getpid()) && ::kill(pid_t(pid), 0) != 0 && errno == ESRCH) stale = true;
        struct stat st {};
        if (!stale && ::lstat(it->path().c_str(), &st) == 0) {
            const auto age =
                std::chrono::system_clock::now() - std::chrono::system_clock::from_time_t(st.st_mtime);
            stale = age > max_age;
        }
        if (!stale) continue;
        std::error_code rm;
        if (fs::remove_all(it->path(), rm) > 0 && !rm) ++removed;
    }
    return removed;
}

namespace {
void fsync_path(const std::filesystem::path& p, int flags) {
    const int fd = ::open(p.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}
} // namespace

void sync_tree(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const auto s = it->symlink_status(ec);
        if (fs::is_directory(s))
            fsync_path(it->path(), O_RDONLY | O_DIRECTORY);
        else if (fs::is_regular_file(s))
            fsync_path(it->path(), O_RDONLY);
    }
    fsync_path(dir, O_RDONLY | O_DIRECTORY);
}

void swap_dir_into_place(const std::filesystem::path& staged, const std::filesystem::path& target) {
    if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) != 0) {
        if (errno != EEXIST && errno != ENOTEMPTY)
            throw io_error(path_string(target),
                           std::string("cannot move the new folder into place: ") + std::strerror(errno));
        if (::renameat2(AT_FDCWD, staged.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) != 0)
            throw io_error(path_string(target),
                           std::string("cannot replace the folder: ") + std::strerror(errno));
        std::error_code ec;
        std::filesystem::remove_all(staged, ec); // the previous folder; failing to delete it loses nothing
    }
    fsync_path(folder_of(target), O_RDONLY | O_DIRECTORY);
}

} // namespace lorafleet::io
