// regular_file (see the header): open with O_NONBLOCK, fstat, refuse what is not S_ISREG, clear
// O_NONBLOCK; read_text_file reads at most max_bytes + 1 bytes so a lying or growing size is caught.
#include "engine/io/regular_file.hpp"

#include "engine/core/error.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace lorafleet::io {

namespace {

const char* kind_of(mode_t mode) {
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISDIR(mode)) return "a directory";
    return "not a plain file";
}

std::string limit_message(std::uint64_t size, std::uint64_t max_bytes, const std::string& what, bool more) {
    return "file is " + std::string(more ? "more than " : "") + std::to_string(size) +
           " bytes, more than the " + std::to_string(max_bytes) + " a " + what + " may have";
}

} // namespace

regular_file& regular_file::operator=(regular_file&& o) noexcept {
    if (this != &o) {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = o.m_fd;
        m_size = o.m_size;
        o.m_fd = -1;
    }
    return *this;
}

regular_file::~regular_file() {
    if (m_fd >= 0) ::close(m_fd);
}

int regular_file::release() {
    const int fd = m_fd;
    m_fd = -1;
    return fd;
}

regular_file open_regular(const std::filesystem::path& path) {
    const std::string where = path_string(path);
    int fd = -1;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        const int err = errno;
        if (err == ENXIO) throw io_error(where, "cannot open: not a regular file (a socket or device)");
        throw io_error(where, std::string("cannot open: ") + std::strerror(err));
    }
    regular_file file(fd, 0);
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw io_error(where, std::string("cannot stat: ") + std::strerror(errno));
    if (!S_ISREG(st.st_mode))
        throw io_error(where, std::string("not a regular file (") + kind_of(st.st_mode) + ")");
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return regular_file(file.release(), static_cast<std::uint64_t>(st.st_size));
}

std::string read_text_file(const std::filesystem::path& path, std::uint64_t max_bytes,
                           const std::string& what) {
    const std::string where = path_string(path);
    regular_file file = open_regular(path);
    if (file.size() > max_bytes)
        throw format_error(where, limit_message(file.size(), max_bytes, what, false));
    std::string text;
    text.resize(static_cast<std::size_t>(file.size()) + 1); // one more: a file that grew is seen
    std::size_t got = 0;
    for (;;) {
        if (got == text.size()) {
            if (got > max_bytes) throw format_error(where, limit_message(max_bytes, max_bytes, what, true));
            text.resize(std::min<std::uint64_t>(max_bytes + 1, std::uint64_t(text.size()) * 2 + 4096));
        }
        const ssize_t n = ::read(file.fd(), text.data() + got, text.size() - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw io_error(where, std::string("read failed: ") + std::strerror(errno));
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    if (got > max_bytes) throw format_error(where, limit_message(max_bytes, max_bytes, what, true));
    text.resize(got);
    return text;
}

} // namespace lorafleet::io
