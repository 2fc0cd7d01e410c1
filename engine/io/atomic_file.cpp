// Atomic file replacement with POSIX calls. The temporary `.<name>.tmp-XXXXXX` lives in the target's
// folder so that rename() stays within one filesystem (and is therefore atomic). Invariant: while the
// writer is not committed, m_temp names a file that belongs to us and is removed on failure or
// destruction; after a failure m_fd is -1 and every further call throws.
#include "engine/io/atomic_file.hpp"

#include "engine/core/error.hpp"

#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
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

} // namespace

atomic_file_writer::atomic_file_writer(std::filesystem::path target) : m_target(std::move(target)) {
    const auto name = m_target.filename();
    if (name.empty() || name == "." || name == "..")
        throw io_error(path_string(m_target), "cannot write: the path does not name a file");
    const auto folder = folder_of(m_target);
    std::string pattern = (folder / ("." + name.string() + ".tmp-XXXXXX")).string();
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
        const ssize_t n = ::write(m_fd, p, left);
        if (n < 0 && errno == EINTR) continue;
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

} // namespace lorafleet::io
