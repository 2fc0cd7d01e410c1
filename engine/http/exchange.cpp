// Writing a response from a handler thread (see exchange.hpp).
#include "engine/http/exchange.hpp"

#include <cerrno>
#include <chrono>
#include <poll.h>
#include <sys/socket.h>

namespace lorafleet::http {

exchange::exchange(std::unique_ptr<connection> conn, request req, connection_home& home, int send_timeout_ms)
    : m_conn(std::move(conn)), m_req(std::move(req)), m_home(home), m_timeout_ms(send_timeout_ms) {}

exchange::~exchange() {
    const bool reusable = m_state == state::done && !m_failed && m_keep_alive;
    m_home.give_back(std::move(m_conn), reusable);
}

bool exchange::send_all(std::string_view data) {
    if (m_failed) return false;
    using clock = std::chrono::steady_clock;
    while (!data.empty()) {
        const ssize_t n = ::send(m_conn->fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // Wait for room; the timeout is for progress, so a slow but reading client is fine.
            const auto start = clock::now();
            pollfd p{m_conn->fd, POLLOUT, 0};
            int r = 0;
            do {
                r = ::poll(&p, 1, m_timeout_ms);
            } while (r < 0 && errno == EINTR &&
                     clock::now() - start < std::chrono::milliseconds(m_timeout_ms));
            if (r == 1 && (p.revents & POLLOUT)) continue;
        }
        m_failed = true;
        return false;
    }
    return true;
}

bool exchange::respond(const response& r) {
    if (m_state != state::none) return false;
    m_keep_alive = m_req.keep_alive && !r.close;
    m_state = state::done;
    return send_all(serialize(r, m_keep_alive, m_req.minor));
}

bool exchange::begin_stream(int status, std::string_view content_type, const header_list& headers) {
    if (m_state != state::none) return false;
    m_keep_alive = m_req.keep_alive && m_req.minor == 1; // HTTP/1.0: the body ends when the connection does
    m_state = state::streaming;
    return send_all(serialize_head(status, content_type, headers, -1, m_keep_alive, m_req.minor));
}

bool exchange::write(std::string_view data) {
    if (m_state != state::streaming || data.empty()) return !m_failed;
    if (m_req.minor == 0) return send_all(data);
    const std::string framed = chunk(data);
    return send_all(framed);
}

bool exchange::end_stream() {
    if (m_state != state::streaming) return false;
    m_state = state::done;
    return m_req.minor == 1 ? send_all(last_chunk()) : !m_failed;
}

bool exchange::client_gone() {
    if (m_failed) return true;
    pollfd p{m_conn->fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL | POLLRDHUP)) return true;
    if (p.revents & POLLIN) {
        char c;
        const ssize_t n = ::recv(m_conn->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0) return true; // orderly close
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    }
    return false; // nothing, or the next pipelined request waiting
}

} // namespace lorafleet::http
