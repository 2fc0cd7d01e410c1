// connection_loop: the listening socket and one event-loop thread (poll) that owns every connection
// while it is idle or while a request is being read, so slow or idle clients cost no handler thread.
// Per connection it enforces:
//   - the header section must arrive within header_timeout_ms of its first byte (total, not per read),
//     the body within body_timeout_ms of the end of the headers: else 408 and close;
//   - an idle connection (keep-alive, or just accepted) is closed after idle_timeout_ms;
//   - parse errors (request_parser.hpp), an unsupported Content-Encoding (415) and a body that inflates
//     past the limit (413) are answered at once, then the connection is half-closed and drained briefly
//     (so the client reads the answer instead of a reset) and closed;
//   - at most max_connections open sockets: the excess get 503 and are closed at once.
// After the header section, hooks.on_head may refuse the request before its body is read (the API key);
// such an answer closes the connection. A complete request goes to hooks.on_request, on the loop thread:
// it either answers at once (small responses that need no engine) or names a handler and a pool; the
// connection then moves into an exchange on that pool and comes back when the response is over. One
// request per connection is handled at a time, so pipelined requests are answered in order.
// Threading: run() on one thread; stop_accepting(), stop(), abort_dispatched(), wait_dispatched() from
// any other. The hooks must not block.
#pragma once

#include "engine/http/connection.hpp"
#include "engine/http/exchange.hpp"
#include "engine/http/handler_pool.hpp"
#include "engine/http/request.hpp"
#include "engine/http/response.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace lorafleet::http {

struct loop_options {
    std::string host = "127.0.0.1";
    int port = 0;
    parser_limits limits; // max_body_bytes bounds the body as sent and as decoded
    int header_timeout_ms = 10'000;
    int body_timeout_ms = 30'000;
    int idle_timeout_ms = 5'000;
    int send_timeout_ms = 10'000; // a write that makes no progress this long fails
    std::size_t max_connections = 512;
};

struct route_decision {
    std::optional<response> answer;         // answered by the loop at once, or
    std::function<void(exchange&)> handler; // run on `pool` (handler must answer; an exchange left
    handler_pool* pool = nullptr;           // unanswered gets a 500)
};

struct loop_hooks {
    std::function<std::optional<response>(const request_head&)> on_head; // may be empty
    std::function<route_decision(request&)> on_request;
    std::function<response(int status, const std::string& message)> error; // the body of loop-made errors
};

class connection_loop : private connection_home {
public:
    connection_loop(loop_options options, loop_hooks hooks);
    ~connection_loop() override;
    connection_loop(const connection_loop&) = delete;
    connection_loop& operator=(const connection_loop&) = delete;

    // Binds and listens; returns the port. Throws io_error.
    int bind();
    // Serves until stop(); returns at once when stop() came first.
    void run();
    // Closes the listening socket (new connections are refused) and idle connections.
    void stop_accepting();
    // run() returns, closing every connection the loop holds; dispatched ones close when their handler ends.
    void stop();
    // Shuts down the sockets of dispatched exchanges, so their handlers' writes fail at once.
    void abort_dispatched();
    // Waits until every dispatched exchange has ended; false on timeout.
    bool wait_dispatched(std::chrono::milliseconds timeout);

    int port() const { return m_port; }
    std::size_t open_connections() const; // loop-held plus dispatched

private:
    void give_back(std::unique_ptr<connection> c, bool reusable) override;
    void wake();
    void accept_all();
    void on_readable(std::unique_ptr<connection>& slot);
    void on_writable(connection& c);
    void advance(std::unique_ptr<connection>& slot);
    void answer(connection& c, const response& r, bool keep_alive);
    void answer_error(connection& c, int status, const std::string& message);
    void flush(connection& c);
    void after_written(connection& c);
    void close_conn(connection& c);
    void to_idle(connection& c);
    void dispatch(std::unique_ptr<connection>& slot, request req, route_decision d);

    loop_options m_options;
    loop_hooks m_hooks;
    int m_listen = -1;
    int m_port = -1;
    int m_wake[2] = {-1, -1};
    std::vector<std::unique_ptr<connection>> m_conns; // loop thread only
    std::atomic<bool> m_stop{false}, m_stop_accepting{false};
    std::atomic<std::size_t> m_loop_held{0};

    mutable std::mutex m_mutex; // guards what follows
    std::condition_variable m_cv;
    std::vector<std::unique_ptr<connection>> m_returned;
    std::set<int> m_dispatched; // fds of connections held by exchanges
    bool m_loop_done = false;   // run() has returned (or never will run): returned connections are closed
};

} // namespace lorafleet::http
