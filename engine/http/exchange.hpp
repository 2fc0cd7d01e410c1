// exchange: one complete request and its connection, handed to a handler thread, and the ways to answer
// it: a whole response, or a streamed one (chunked; until-close for HTTP/1.0). Every write waits at most
// `send_timeout_ms` for the socket to take more bytes; a failed or timed-out write marks the exchange
// failed (the connection is then closed, never reused). client_gone() notices, without blocking, a client
// that closed its side (how a waiting handler decides to cancel its engine request). The destructor gives
// the connection back to the event loop for the next (maybe already pipelined) request when the response
// was complete and both sides allow keep-alive; otherwise it closes it. One thread at a time.
#pragma once

#include "engine/http/connection.hpp"
#include "engine/http/request.hpp"
#include "engine/http/response.hpp"

#include <memory>
#include <string_view>

namespace lorafleet::http {

class exchange {
public:
    exchange(std::unique_ptr<connection> conn, request req, connection_home& home, int send_timeout_ms);
    ~exchange();
    exchange(const exchange&) = delete;
    exchange& operator=(const exchange&) = delete;

    const request& req() const { return m_req; }

    // A whole response. False when the client could not be written to.
    bool respond(const response& r);
    // Streamed: the head now, then pieces, then end_stream(). False once a write failed.
    bool begin_stream(int status, std::string_view content_type, const header_list& headers = {});
    bool write(std::string_view data);
    bool end_stream();

    // The client closed its side, or the connection failed. Does not block.
    bool client_gone();
    bool failed() const { return m_failed; }
    bool answered() const { return m_state != state::none; }

private:
    bool send_all(std::string_view data);

    enum class state { none, streaming, done };
    std::unique_ptr<connection> m_conn;
    request m_req;
    connection_home& m_home;
    int m_timeout_ms;
    state m_state = state::none;
    bool m_failed = false;
    bool m_keep_alive = false;
};

} // namespace lorafleet::http
