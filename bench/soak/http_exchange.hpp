// One HTTP/1.1 exchange over a fresh loopback TCP connection (POSIX sockets, "Connection: close"), with a
// deadline on everything, for the soak benchmark: it reports HOW the exchange ended (a complete response,
// a timeout, a connection closed or reset before the response was complete, bytes that are not HTTP), so
// the benchmark can tell an answered request from a lost one. Bodies are de-chunked; a watch callback sees
// the body as it grows and may close the connection early (a client that walks away mid-stream).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace soak {

using clock_type = std::chrono::steady_clock;

enum class transport {
    complete,       // a whole response: status line, headers and the body its framing announced
    aborted,        // the watch callback asked to close the connection (deliberate)
    timeout,        // no complete response before the deadline
    closed_early,   // the server closed the connection before the response was complete
    reset,          // connection reset / socket error
    malformed,      // bytes that are not an HTTP/1.x response, or framing errors
    connect_failed, // could not connect (refused, or no answer to the SYN before the deadline)
};
const char* transport_name(transport t);

struct http_result {
    transport how = transport::connect_failed;
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers; // names lower-cased
    std::string body;                                         // de-chunked
    std::string detail;                                       // what went wrong, for the report
    double ms = 0;                                            // connect to end

    const std::string* header(std::string_view lower_name) const;
};

// Called with the body received so far each time more of it arrives; false closes the connection.
using body_watch = std::function<bool(const std::string& body_so_far)>;

// "METHOD PATH HTTP/1.1" with Host, Connection: close and, when body is not empty, Content-Type and
// Content-Length; extra_headers are "Name: value" lines without the CRLF.
std::string make_request(std::string_view method, std::string_view path, std::string_view body = {},
                         const std::vector<std::string>& extra_headers = {});

// Connects to 127.0.0.1:port (non-blocking, bounded by the deadline). Returns the socket or -1 (why set).
int connect_loopback(int port, clock_type::time_point deadline, std::string& why);

// Writes all of data before the deadline; false on a timeout or a socket error (why set).
bool send_all(int fd, std::string_view data, clock_type::time_point deadline, std::string& why);

// Reads one response from fd (already sent to) before the deadline. Does not close fd.
http_result read_response(int fd, clock_type::time_point deadline, const body_watch& watch = {});

// connect + send + read_response + close, all within timeout.
http_result exchange(int port, const std::string& request, std::chrono::milliseconds timeout,
                     const body_watch& watch = {});

} // namespace soak
