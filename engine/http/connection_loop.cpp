// The event loop that owns the connections while requests are read (see connection_loop.hpp).
#include "engine/http/connection_loop.hpp"

#include "engine/core/error.hpp"
#include "engine/http/body_decoding.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace lorafleet::http {

namespace {

constexpr std::chrono::milliseconds linger_time{2000};

std::chrono::milliseconds ms(int v) {
    return std::chrono::milliseconds(v);
}

} // namespace

connection_loop::connection_loop(loop_options options, loop_hooks hooks)
    : m_options(std::move(options)), m_hooks(std::move(hooks)) {
    if (::pipe2(m_wake, O_NONBLOCK | O_CLOEXEC) != 0) throw io_error("http server", "cannot create a pipe");
}

connection_loop::~connection_loop() {
    stop();
    for (auto& c : m_conns)
        if (c && c->fd >= 0) ::close(c->fd);
    m_conns.clear();
    {
        std::lock_guard lock(m_mutex);
        m_loop_done = true;
        for (auto& c : m_returned)
            ::close(c->fd);
        m_returned.clear();
    }
    if (m_listen >= 0) ::close(m_listen);
    ::close(m_wake[0]);
    ::close(m_wake[1]);
}

int connection_loop::bind() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* found = nullptr;
    const std::string where = m_options.host + ":" + std::to_string(m_options.port);
    const std::string port = std::to_string(m_options.port);
    if (::getaddrinfo(m_options.host.c_str(), port.c_str(), &hints, &found) != 0 || !found)
        throw io_error(where, "not an address this machine can bind");
    int fd = -1;
    for (addrinfo* a = found; a; a = a->ai_next) {
        fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
        if (fd < 0) continue;
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 1024) == 0) break;
        ::close(fd);
        fd = -1;
    }
    ::freeaddrinfo(found);
    if (fd < 0) throw io_error(where, "cannot bind (address in use, or not an address of this machine)");
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    m_port = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                        : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    m_listen = fd;
    return m_port;
}

void connection_loop::wake() {
    const char c = 1;
    [[maybe_unused]] const auto n = ::write(m_wake[1], &c, 1); // a full pipe already wakes the loop
}

void connection_loop::stop_accepting() {
    m_stop_accepting = true;
    wake();
}

void connection_loop::stop() {
    m_stop = true;
    wake();
}

void connection_loop::abort_dispatched() {
    std::lock_guard lock(m_mutex);
    for (int fd : m_dispatched)
        ::shutdown(fd, SHUT_RDWR);
}

bool connection_loop::wait_dispatched(std::chrono::milliseconds timeout) {
    std::unique_lock lock(m_mutex);
    return m_cv.wait_for(lock, timeout, [&] { return m_dispatched.empty(); });
}

std::size_t connection_loop::open_connections() const {
    std::lock_guard lock(m_mutex);
    return m_loop_held.load() + m_dispatched.size() + m_returned.size();
}

void connection_loop::give_back(std::unique_ptr<connection> c, bool reusable) {
    std::lock_guard lock(m_mutex);
    m_dispatched.erase(c->fd);
    if (reusable && !m_loop_done && !m_stop) {
        m_returned.push_back(std::move(c));
        wake();
    } else {
        ::close(c->fd);
    }
    m_cv.notify_all();
}

void connection_loop::close_conn(connection& c) {
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
}

void connection_loop::to_idle(connection& c) {
    c.state = connection::phase::idle;
    c.deadline = steady::now() + ms(m_options.idle_timeout_ms);
}

void connection_loop::accept_all() {
    while (m_listen >= 0) {
        const int fd = ::accept4(m_listen, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; // EAGAIN, or out of descriptors (the pending ones wait in the backlog)
        }
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::size_t dispatched;
        {
            std::lock_guard lock(m_mutex);
            dispatched =
                m_dispatched.size() + m_returned.size(); // handed back, not picked up yet: still open
        }
        if (m_conns.size() + dispatched >= m_options.max_connections) {
            const std::string busy =
                serialize(m_hooks.error(503, "too many open connections; retry later"), false, 1);
            [[maybe_unused]] const auto n = ::send(fd, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            ::shutdown(fd, SHUT_WR);
            ::close(fd);
            continue;
        }
        auto c = std::make_unique<connection>(fd, m_options.limits);
        to_idle(*c);
        m_conns.push_back(std::move(c));
    }
}

void connection_loop::flush(connection& c) {
    while (c.out_done < c.out.size()) {
        const ssize_t n =
            ::send(c.fd, c.out.data() + c.out_done, c.out.size() - c.out_done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c.out_done += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return; // POLLOUT will call again
        close_conn(c);
        return;
    }
    c.out.clear();
    c.out_done = 0;
    if (c.state == connection::phase::writing) after_written(c);
}

void connection_loop::after_written(connection& c) {
    if (c.close_after_out) {
        ::shutdown(c.fd, SHUT_WR);
        c.state = connection::phase::lingering;
        c.in.clear();
        c.deadline = steady::now() + linger_time;
    } else {
        to_idle(c);
    }
}

void connection_loop::answer(connection& c, const response& r, bool keep_alive) {
    const int minor = c.parser.status() == parse_status::failed ? 1 : c.parser.head().minor;
    c.out += serialize(r, keep_alive, minor);
    c.close_after_out = !keep_alive;
    c.state = connection::phase::writing;
    c.deadline = steady::now() + ms(m_options.send_timeout_ms);
    flush(c);
}

void connection_loop::answer_error(connection& c, int status, const std::string& message) {
    response r = m_hooks.error(status, message);
    answer(c, r, false);
}

void connection_loop::on_writable(connection& c) {
    flush(c);
}

void connection_loop::advance(std::unique_ptr<connection>& slot) {
    while (slot && slot->fd >= 0) {
        connection& c = *slot;
        using phase = connection::phase;
        if (c.state != phase::idle && c.state != phase::head && c.state != phase::body) return;
        if (c.parser.status() == parse_status::need_more) {
            if (c.in.empty()) return;
            const std::size_t used = c.parser.feed(c.in);
            c.in.erase(0, used);
            if (c.state == phase::idle && c.parser.started()) {
                c.state = phase::head;
                c.deadline = steady::now() + ms(m_options.header_timeout_ms);
            }
        }
        switch (c.parser.status()) {
        case parse_status::need_more:
            if (c.in.empty()) return;
            continue;
        case parse_status::failed:
            answer_error(c, c.parser.error_status(), c.parser.error_message());
            return;
        case parse_status::head_done: {
            const request_head& h = c.parser.head();
            if (parse_content_encoding(h.header("content-encoding")) == coding::unsupported)
                return answer_error(c, 415,
                                    "unsupported Content-Encoding (this server inflates gzip and deflate)");
            if (m_hooks.on_head)
                if (auto r = m_hooks.on_head(h)) return answer(c, *r, false); // body unread: close after
            if (c.parser.expects_continue() && c.parser.has_body() && c.in.empty()) {
                c.out += "HTTP/1.1 100 Continue\r\n\r\n";
                flush(c);
                if (c.fd < 0) return;
            }
            c.parser.read_body();
            c.state = phase::body;
            c.deadline = steady::now() + ms(m_options.body_timeout_ms);
            continue;
        }
        case parse_status::complete: {
            request req;
            static_cast<request_head&>(req) = c.parser.head();
            req.body = c.parser.take_body();
            req.keep_alive = c.parser.keep_alive();
            const auto d = decode_body(req.body, parse_content_encoding(req.header("content-encoding")),
                                       m_options.limits.max_body_bytes);
            if (d.status != 0) return answer_error(c, d.status, d.message);
            route_decision decision = m_hooks.on_request(req);
            if (decision.answer) {
                const bool keep = req.keep_alive && !decision.answer->close && !m_stop_accepting;
                answer(c, *decision.answer, keep);
                c.parser.reset();
                if (c.state != phase::idle) return; // still writing, or closing
                continue;                           // a pipelined request may be waiting in c.in
            }
            c.parser.reset();
            dispatch(slot, std::move(req), std::move(decision));
            return;
        }
        }
    }
}

void connection_loop::dispatch(std::unique_ptr<connection>& slot, request req, route_decision d) {
    {
        std::lock_guard lock(m_mutex);
        m_dispatched.insert(slot->fd);
    }
    connection_home& home = *this;
    auto ex = std::make_shared<exchange>(std::move(slot), std::move(req), home, m_options.send_timeout_ms);
    auto error = m_hooks.error;
    auto handler = std::move(d.handler);
    const bool posted = d.pool && d.pool->post([ex, handler, error]() mutable {
        try {
            handler(*ex);
        } catch (...) {
        }
        if (!ex->answered()) ex->respond(error(500, "the request handler gave no answer"));
        ex.reset();
    });
    if (!posted) {
        response r = error(503, "the server is shutting down");
        r.close = true;
        ex->respond(r);
    }
}

void connection_loop::on_readable(std::unique_ptr<connection>& slot) {
    connection& c = *slot;
    char buf[64 * 1024];
    if (c.state == connection::phase::lingering) {
        while (true) {
            const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) continue;
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            close_conn(c);
            return;
        }
    }
    if (c.state == connection::phase::writing) return;
    const ssize_t n = ::recv(c.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return close_conn(c); // the client closed: nothing to answer
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) close_conn(c);
        return;
    }
    c.in.append(buf, static_cast<std::size_t>(n));
    advance(slot);
}

void connection_loop::run() {
    if (m_listen < 0 || m_stop) {
        std::lock_guard lock(m_mutex);
        m_loop_done = true;
        return;
    }
    std::vector<pollfd> fds;
    using phase = connection::phase;
    while (!m_stop) {
        std::vector<std::unique_ptr<connection>> returned;
        {
            std::lock_guard lock(m_mutex);
            returned.swap(m_returned);
        }
        for (auto& c : returned) {
            to_idle(*c);
            m_conns.push_back(std::move(c));
            advance(m_conns.back()); // a pipelined request may already be there
        }
        if (m_stop_accepting) {
            if (m_listen >= 0) ::close(m_listen);
            m_listen = -1;
            for (auto& c : m_conns)
                if (c && c->fd >= 0 && c->state == phase::idle && c->in.empty()) close_conn(*c);
        }
        std::erase_if(m_conns, [](const auto& c) { return !c || c->fd < 0; });
        m_loop_held = m_conns.size();

        const auto now = steady::now();
        auto next = now + std::chrono::seconds(1);
        fds.clear();
        fds.push_back({m_wake[0], POLLIN, 0});
        fds.push_back({m_listen, POLLIN, 0}); // fd -1 is ignored by poll
        for (auto& c : m_conns) {
            short events = 0;
            if (c->state == phase::writing)
                events = POLLOUT;
            else
                events = POLLIN;
            if (c->out_done < c->out.size()) events |= POLLOUT;
            fds.push_back({c->fd, events, 0});
            next = std::min(next, c->deadline);
        }
        const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
        const int ready =
            ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<long long>(wait + 1, 0, 1000)));
        if (ready < 0 && errno != EINTR) break;
        if (fds[0].revents & POLLIN) {
            char drain[256];
            while (::read(m_wake[0], drain, sizeof drain) > 0) {
            }
        }
        const std::size_t polled = fds.size() - 2;
        for (std::size_t i = 0; i < polled; ++i) {
            auto& slot = m_conns[i];
            const short rev = fds[i + 2].revents;
            if (!slot || slot->fd < 0 || rev == 0) continue;
            if (rev & POLLNVAL) {
                close_conn(*slot);
                continue;
            }
            if ((rev & (POLLHUP | POLLERR)) && slot->state == phase::writing) {
                close_conn(*slot); // the client is gone: nobody to write to
                continue;
            }
            if (rev & POLLOUT) on_writable(*slot);
            if (slot && slot->fd >= 0 && slot->state == phase::idle && slot->out.empty() && !slot->in.empty())
                advance(slot); // a write finished and pipelined bytes wait
            if (slot && slot->fd >= 0 && (rev & (POLLIN | POLLHUP | POLLERR))) on_readable(slot);
        }
        if (fds[1].revents & POLLIN) accept_all();

        const auto after = steady::now();
        for (auto& slot : m_conns) {
            if (!slot || slot->fd < 0 || slot->deadline > after) continue;
            connection& c = *slot;
            switch (c.state) {
            case phase::head:
                answer_error(c, 408,
                             "the request header section did not arrive in time (" +
                                 std::to_string(m_options.header_timeout_ms / 1000) + " s)");
                break;
            case phase::body:
                answer_error(c, 408,
                             "the request body did not arrive in time (" +
                                 std::to_string(m_options.body_timeout_ms / 1000) + " s)");
                break;
            default: // idle, a write that made no progress, lingering
                close_conn(c);
            }
        }
    }
    for (auto& c : m_conns)
        if (c && c->fd >= 0) close_conn(*c);
    m_conns.clear();
    m_loop_held = 0;
    if (m_listen >= 0) ::close(m_listen);
    m_listen = -1;
    std::lock_guard lock(m_mutex);
    m_loop_done = true;
    for (auto& c : m_returned)
        ::close(c->fd);
    m_returned.clear();
}

} // namespace lorafleet::http
