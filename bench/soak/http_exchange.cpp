// See http_exchange.hpp. A small buffered reader over a non-blocking socket: every wait is a poll() bounded
// by the exchange's deadline.
#include "bench/soak/http_exchange.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace soak {

namespace {

constexpr std::size_t max_header_bytes = 64 * 1024;
constexpr std::size_t max_body_bytes = 64u * 1024 * 1024;

int ms_left(clock_type::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
    return static_cast<int>(std::clamp<long long>(left.count(), 0, 1 << 30));
}

std::string lower(std::string s) {
    for (auto& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::string trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return std::string(s);
}

// Buffered reads with a deadline. fill() returns the outcome of one read.
class reader {
public:
    enum status { data, eof, error, timed_out };

    reader(int fd, clock_type::time_point deadline) : m_fd(fd), m_deadline(deadline) {}

    status fill() {
        for (;;) {
            const int wait = ms_left(m_deadline);
            if (wait <= 0) return timed_out;
            pollfd p{m_fd, POLLIN, 0};
            const int r = ::poll(&p, 1, wait);
            if (r < 0) {
                if (errno == EINTR) continue;
                m_error = std::strerror(errno);
                return error;
            }
            if (r == 0) return timed_out;
            char chunk[16384];
            const ssize_t n = ::recv(m_fd, chunk, sizeof chunk, 0);
            if (n > 0) {
                buf.append(chunk, static_cast<std::size_t>(n));
                return data;
            }
            if (n == 0) return eof;
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            m_error = std::strerror(errno);
            return error;
        }
    }
    const std::string& error_text() const { return m_error; }

    std::string buf; // unread bytes start at pos
    std::size_t pos = 0;

private:
    int m_fd;
    clock_type::time_point m_deadline;
    std::string m_error;
};

// Maps a failed fill() to the result's transport outcome.
void fail(http_result& r, reader::status s, const reader& rd, const char* where) {
    switch (s) {
    case reader::eof:
        r.how = transport::closed_early;
        r.detail = std::string("connection closed ") + where;
        break;
    case reader::timed_out:
        r.how = transport::timeout;
        r.detail = std::string("no data before the deadline ") + where;
        break;
    default:
        r.how = transport::reset;
        r.detail = std::string("socket error ") + where + ": " + rd.error_text();
        break;
    }
}

} // namespace

const char* transport_name(transport t) {
    switch (t) {
    case transport::complete:
        return "complete";
    case transport::aborted:
        return "aborted";
    case transport::timeout:
        return "timeout";
    case transport::closed_early:
        return "closed_early";
    case transport::reset:
        return "reset";
    case transport::malformed:
        return "malformed";
    case transport::connect_failed:
        return "connect_failed";
    }
    return "?";
}

const std::string* http_result::header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers)
        if (k == lower_name) return &v;
    return nullptr;
}

std::string make_request(std::string_view method, std::string_view path, std::string_view body,
                         const std::vector<std::string>& extra_headers) {
    std::string r;
    r.reserve(256 + body.size());
    r.append(method).append(" ").append(path).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (const auto& h : extra_headers)
        r.append(h).append("\r\n");
    if (!body.empty()) {
        r.append("Content-Type: application/json\r\nContent-Length: ").append(std::to_string(body.size()));
        r.append("\r\n");
    }
    r.append("\r\n").append(body);
    return r;
}

int connect_loopback(int port, clock_type::time_point deadline, std::string& why) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        why = std::string("socket(): ") + std::strerror(errno);
        return -1;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return fd;
    if (errno != EINPROGRESS) {
        why = std::string("connect(): ") + std::strerror(errno);
        ::close(fd);
        return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int r;
    do {
        r = ::poll(&p, 1, ms_left(deadline));
    } while (r < 0 && errno == EINTR);
    if (r <= 0) {
        why = r == 0 ? "connect(): no answer before the deadline"
                     : std::string("poll(): ") + std::strerror(errno);
        ::close(fd);
        return -1;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
        why = std::string("connect(): ") + std::strerror(err);
        ::close(fd);
        return -1;
    }
    return fd;
}

bool send_all(int fd, std::string_view data, clock_type::time_point deadline, std::string& why) {
    while (!data.empty()) {
        const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd, POLLOUT, 0};
            const int r = ::poll(&p, 1, ms_left(deadline));
            if (r == 0) {
                why = "send: no room before the deadline";
                return false;
            }
            continue;
        }
        why = std::string("send(): ") + std::strerror(errno);
        return false;
    }
    return true;
}

http_result read_response(int fd, clock_type::time_point deadline, const body_watch& watch) {
    http_result r;
    reader rd(fd, deadline);

    // Status line and headers.
    std::size_t end;
    while ((end = rd.buf.find("\r\n\r\n")) == std::string::npos) {
        if (rd.buf.size() > max_header_bytes) {
            r.how = transport::malformed;
            r.detail = "response headers larger than 64 KiB";
            return r;
        }
        const auto s = rd.fill();
        if (s != reader::data) {
            fail(r, s, rd, rd.buf.empty() ? "before any response byte" : "inside the response headers");
            return r;
        }
    }
    const std::string head = rd.buf.substr(0, end);
    rd.pos = end + 4;
    std::size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.rfind("HTTP/1.", 0) != 0 || status_line.size() < 12 || status_line[8] != ' ') {
        r.how = transport::malformed;
        r.detail = "not an HTTP/1.x status line";
        return r;
    }
    r.status = std::atoi(status_line.c_str() + 9);
    if (r.status < 100 || r.status > 599) {
        r.how = transport::malformed;
        r.detail = "status out of range";
        return r;
    }
    while (line_end != std::string::npos) {
        const std::size_t start = line_end + 2;
        line_end = head.find("\r\n", start);
        const std::string line =
            head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
        const auto colon = line.find(':');
        if (colon == std::string::npos) {
            r.how = transport::malformed;
            r.detail = "header line without ':'";
            return r;
        }
        r.headers.emplace_back(lower(trim(line.substr(0, colon))), trim(line.substr(colon + 1)));
    }

    auto grew = [&]() -> bool { // false: the watch closed the connection
        if (watch && !watch(r.body)) {
            r.how = transport::aborted;
            return false;
        }
        return true;
    };

    const std::string* te = r.header("transfer-encoding");
    const std::string* cl = r.header("content-length");
    if (te && lower(*te).find("chunked") != std::string::npos) {
        for (;;) {
            std::size_t eol;
            while ((eol = rd.buf.find("\r\n", rd.pos)) == std::string::npos) {
                if (rd.buf.size() - rd.pos > 1024) {
                    r.how = transport::malformed;
                    r.detail = "chunk size line too long";
                    return r;
                }
                const auto s = rd.fill();
                if (s != reader::data) return fail(r, s, rd, "inside a chunked body"), r;
            }
            const std::string size_text = rd.buf.substr(rd.pos, eol - rd.pos);
            char* stop = nullptr;
            const unsigned long long size = std::strtoull(size_text.c_str(), &stop, 16);
            if (stop == size_text.c_str() || (*stop != '\0' && *stop != ';' && *stop != ' ') ||
                size > max_body_bytes || r.body.size() + size > max_body_bytes) {
                r.how = transport::malformed;
                r.detail = "bad chunk size";
                return r;
            }
            rd.pos = eol + 2;
            if (size == 0) { // trailers, then an empty line
                for (;;) {
                    while ((eol = rd.buf.find("\r\n", rd.pos)) == std::string::npos) {
                        const auto s = rd.fill();
                        if (s != reader::data) return fail(r, s, rd, "inside the chunked trailer"), r;
                    }
                    const bool empty = eol == rd.pos;
                    rd.pos = eol + 2;
                    if (empty) break;
                }
                r.how = transport::complete;
                return r;
            }
            while (rd.buf.size() - rd.pos < size + 2) {
                const auto s = rd.fill();
                if (s != reader::data) return fail(r, s, rd, "inside a chunk"), r;
            }
            r.body.append(rd.buf, rd.pos, size);
            if (rd.buf.compare(rd.pos + size, 2, "\r\n") != 0) {
                r.how = transport::malformed;
                r.detail = "chunk not followed by CRLF";
                return r;
            }
            rd.pos += size + 2;
            rd.buf.erase(0, rd.pos);
            rd.pos = 0;
            if (!grew()) return r;
        }
    }
    if (cl) {
        char* stop = nullptr;
        const unsigned long long length = std::strtoull(cl->c_str(), &stop, 10);
        if (stop == cl->c_str() || *stop != '\0' || length > max_body_bytes) {
            r.how = transport::malformed;
            r.detail = "bad Content-Length";
            return r;
        }
        while (rd.buf.size() - rd.pos < length) {
            const auto s = rd.fill();
            if (s != reader::data) return fail(r, s, rd, "inside a Content-Length body"), r;
        }
        r.body = rd.buf.substr(rd.pos, length);
        if (!grew()) return r;
        r.how = transport::complete;
        return r;
    }
    if (r.status == 204 || r.status == 304 || r.status < 200) {
        r.how = transport::complete;
        return r;
    }
    // No framing: the body runs to the end of the connection.
    r.body = rd.buf.substr(rd.pos);
    for (;;) {
        const auto s = rd.fill();
        if (s == reader::eof) break;
        if (s != reader::data) return fail(r, s, rd, "inside a body read to the end of the connection"), r;
        r.body = rd.buf.substr(rd.pos);
        if (r.body.size() > max_body_bytes) {
            r.how = transport::malformed;
            r.detail = "body larger than 64 MiB";
            return r;
        }
        if (!grew()) return r;
    }
    r.how = transport::complete;
    return r;
}

http_result exchange(int port, const std::string& request, std::chrono::milliseconds timeout,
                     const body_watch& watch) {
    const auto start = clock_type::now();
    const auto deadline = start + timeout;
    http_result r;
    std::string why;
    const int fd = connect_loopback(port, deadline, why);
    if (fd < 0) {
        r.how = transport::connect_failed;
        r.detail = why;
    } else {
        if (!send_all(fd, request, deadline, why)) {
            // The server may have answered and closed before reading everything (e.g. 413): read what
            // is there before calling it lost.
            r = read_response(fd, deadline, watch);
            if (r.how != transport::complete) r.detail = why + "; then " + r.detail;
        } else {
            r = read_response(fd, deadline, watch);
        }
        ::close(fd);
    }
    r.ms = std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
    return r;
}

} // namespace soak
