// The test HTTP client (see http_client.hpp).
#include "tests/support/http_client.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <memory>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace lorafleet::test {

http_connection::http_connection(int port, int timeout_ms) : m_timeout_ms(timeout_ms) {
    m_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m_fd < 0) return;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(m_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(m_fd);
        m_fd = -1;
        return;
    }
    const int one = 1;
    ::setsockopt(m_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

http_connection::~http_connection() {
    close();
}

void http_connection::close() {
    if (m_fd >= 0) ::close(m_fd);
    m_fd = -1;
}

void http_connection::set_receive_buffer(int bytes) {
    if (m_fd >= 0) ::setsockopt(m_fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

bool http_connection::send(std::string_view bytes) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(m_timeout_ms);
    while (!bytes.empty() && m_fd >= 0) {
        const ssize_t n = ::send(m_fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  deadline - std::chrono::steady_clock::now())
                                  .count();
            if (left <= 0) return false;
            pollfd p{m_fd, POLLOUT, 0};
            ::poll(&p, 1, static_cast<int>(left));
            continue;
        }
        return false;
    }
    return m_fd >= 0;
}

bool http_connection::fill() {
    if (m_fd < 0) return false;
    pollfd p{m_fd, POLLIN, 0};
    const int r = ::poll(&p, 1, m_timeout_ms);
    if (r <= 0) {
        m_error = r == 0 ? "timed out" : "poll failed";
        return false;
    }
    char buf[64 * 1024];
    const ssize_t n = ::recv(m_fd, buf, sizeof buf, 0);
    if (n <= 0) {
        m_error = n == 0 ? "connection closed by the server" : "connection reset";
        return false;
    }
    m_buf.append(buf, static_cast<std::size_t>(n));
    return true;
}

bool http_connection::closed_by_server(int timeout_ms) {
    if (m_fd < 0) return true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (true) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now())
                .count();
        if (left <= 0) return false;
        pollfd p{m_fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
        char buf[4096];
        const ssize_t n = ::recv(m_fd, buf, sizeof buf, 0);
        if (n <= 0) return true;
        m_buf.append(buf, static_cast<std::size_t>(n));
    }
}

http_reply http_connection::read_response(const std::function<bool(std::string_view)>& on_data) {
    http_reply r;
    auto fail = [&](const std::string& why) {
        http_reply e;
        e.status = -1;
        e.body = "transport error: " + why + (m_error.empty() ? "" : " (" + m_error + ")");
        close();
        return e;
    };
    std::size_t end;
    while ((end = m_buf.find("\r\n\r\n")) == std::string::npos)
        if (!fill()) return fail("no complete response head");
    const std::string head = m_buf.substr(0, end);
    m_buf.erase(0, end + 4);
    // Status line.
    const auto line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12 || status_line.rfind("HTTP/1.", 0) != 0) return fail("bad status line");
    r.status = std::stoi(status_line.substr(9, 3));
    std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
        auto e = head.find("\r\n", pos);
        if (e == std::string::npos) e = head.size();
        const std::string l = head.substr(pos, e - pos);
        pos = e + 2;
        const auto colon = l.find(':');
        if (colon == std::string::npos) continue;
        std::string name = l.substr(0, colon);
        for (auto& c : name)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        std::string value = l.substr(colon + 1);
        while (!value.empty() && value.front() == ' ')
            value.erase(0, 1);
        r.headers[name] = value;
    }
    if (r.status == 100) return read_response(on_data); // interim response
    auto deliver = [&](std::string_view piece) {
        r.body.append(piece);
        if (on_data && !on_data(piece)) return false;
        return true;
    };
    if (r.header("transfer-encoding") == "chunked") {
        while (true) {
            std::size_t le;
            while ((le = m_buf.find("\r\n")) == std::string::npos)
                if (!fill()) return fail("truncated chunk size");
            const std::size_t size = std::stoul(m_buf.substr(0, le), nullptr, 16);
            m_buf.erase(0, le + 2);
            while (m_buf.size() < size + 2)
                if (!fill()) return fail("truncated chunk");
            const std::string piece = m_buf.substr(0, size);
            m_buf.erase(0, size + 2);
            if (size == 0) break;
            if (!deliver(piece)) {
                close();
                r.status = -2; // hung up by the caller
                return r;
            }
        }
    } else if (!r.header("content-length").empty()) {
        const std::size_t n = std::stoul(r.header("content-length"));
        while (m_buf.size() < n)
            if (!fill()) return fail("truncated body");
        deliver(std::string_view(m_buf).substr(0, n));
        m_buf.erase(0, n);
    } else if (r.status >= 200 && r.status != 204 && r.status != 304) {
        while (fill()) { // until the server closes
        }
        deliver(m_buf);
        m_buf.clear();
        close();
    }
    if (r.header("connection") == "close") close();
    return r;
}

std::string format_request(const std::string& method, const std::string& path, const std::string& body,
                           const header_pairs& headers) {
    std::string out = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    bool has_type = false;
    for (const auto& [n, v] : headers) {
        out += n + ": " + v + "\r\n";
        if (n == "Content-Type") has_type = true;
    }
    if (method != "GET" && method != "DELETE") {
        if (!has_type) out += "Content-Type: application/json\r\n";
        out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    out += "\r\n";
    out += body;
    return out;
}

http_reply http_client::request(const std::string& method, const std::string& path, const std::string& body,
                                const header_pairs& headers,
                                const std::function<bool(std::string_view)>& on_data) {
    if (!m_conn || !m_conn->connected()) m_conn = std::make_unique<http_connection>(m_port, m_timeout_ms);
    if (!m_conn->connected()) return {-1, {}, "transport error: cannot connect"};
    if (!m_conn->send(format_request(method, path, body, headers))) {
        // A kept-alive connection the server closed meanwhile (idle timeout): one fresh try.
        m_conn = std::make_unique<http_connection>(m_port, m_timeout_ms);
        if (!m_conn->send(format_request(method, path, body, headers)))
            return {-1, {}, "transport error: cannot send"};
    }
    http_reply r = m_conn->read_response(on_data);
    if (r.status == -1 && r.body.find("no complete response head") != std::string::npos &&
        r.body.find("closed by the server") != std::string::npos) {
        // The server had closed the idle connection before our request reached it: retry once.
        m_conn = std::make_unique<http_connection>(m_port, m_timeout_ms);
        if (m_conn->send(format_request(method, path, body, headers))) r = m_conn->read_response(on_data);
    }
    if (!m_conn->connected()) m_conn.reset();
    return r;
}

} // namespace lorafleet::test
