// One client connection: its socket, the bytes read but not parsed yet (the start of a pipelined next
// request, say), its parser, and what the event loop tracks while it owns it (phase, deadline, bytes
// waiting to be written). Owned by exactly one thread at a time: the event loop while a request is being
// read or a short answer written, the handler thread (through an exchange) while a route runs.
#pragma once

#include "engine/http/request_parser.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace lorafleet::http {

using steady = std::chrono::steady_clock;

struct connection {
    enum class phase {
        idle,      // between requests (or just accepted): waiting for the first byte
        head,      // reading the request line and header fields
        body,      // reading the body
        writing,   // the loop writes an answer it made itself (then idle again, or lingering)
        lingering, // answered and half-closed: unread input is drained briefly so the answer is not lost
    };
    int fd = -1;
    std::string in; // received, not yet given to the parser
    request_parser parser;
    phase state = phase::idle;
    steady::time_point deadline;
    std::string out; // bytes the loop still has to write
    std::size_t out_done = 0;
    bool close_after_out = false; // after `out`: linger and close (else: back to idle)

    explicit connection(int socket, parser_limits limits) : fd(socket), parser(limits) {}
};

// Where a handler gives a connection back when its response is over.
class connection_home {
public:
    virtual ~connection_home() = default;
    // reusable: the response was complete and the connection may carry another request.
    virtual void give_back(std::unique_ptr<connection> c, bool reusable) = 0;
};

} // namespace lorafleet::http
