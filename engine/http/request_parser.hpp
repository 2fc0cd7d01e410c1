// request_parser: an incremental, strict HTTP/1.1 request parser (RFC 9112). Bytes go in as they arrive,
// in pieces of any size; the parser stops once the header section is complete (so the caller can check
// the API key and the declared body before reading any of it), then reads a Content-Length or chunked
// body. Anything ambiguous is refused rather than guessed, in particular the request-smuggling shapes:
//   400: a malformed request line or header field, a bare CR or LF, obs-fold (a line starting with white
//        space), white space before ':', Content-Length together with Transfer-Encoding, Content-Lengths
//        that differ, a non-numeric or overflowing length, bad chunk syntax, Transfer-Encoding in
//        HTTP/1.0, no Host (HTTP/1.1) or several Hosts
//   411: a POST / PUT / PATCH with neither Content-Length nor chunked
//   413: a body (declared or read) over max_body_bytes          414: a request-target over max_target_bytes
//   417: an Expect other than 100-continue                        431: header section over its byte/field
//   limits 501: a transfer coding other than chunked                     505: an HTTP version other than 1.0
//   / 1.1
// Errors are final: the connection must be closed after the error response.
// Not thread-safe (one parser per connection).
#pragma once

#include "engine/http/request.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lorafleet::http {

struct parser_limits {
    std::size_t max_head_bytes = 16 * 1024;  // request line + header fields (and, apart, the trailers)
    std::size_t max_target_bytes = 8 * 1024; // the request-target
    std::size_t max_headers = 100;           // header fields
    std::size_t max_body_bytes = 1 << 20;    // body bytes as sent (chunk data summed, before decoding)
};

enum class parse_status {
    need_more, // give it more bytes
    head_done, // the header section is complete: look at head(), then call read_body()
    complete,  // the whole request is in: take_body(), then reset() for the next one
    failed     // error_status() / error_message(); close the connection after answering
};

class request_parser {
public:
    explicit request_parser(parser_limits limits = {}) : m_limits(limits) {}

    // Consumes a prefix of `data` and returns its length. Stops early at head_done, complete and failed
    // (the rest belongs to the body, or to the next pipelined request).
    std::size_t feed(std::string_view data);
    parse_status status() const { return m_status; }
    // After head_done: read the body next (complete at once when there is none).
    void read_body();
    // Back to the start, for the next request on the same connection.
    void reset();

    const request_head& head() const { return m_head; }
    std::string take_body() { return std::move(m_body); }
    bool keep_alive() const { return m_keep_alive; }
    bool expects_continue() const { return m_expect_continue; }
    bool has_body() const { return m_chunked || m_content_length > 0; }
    // Whether any byte of a request (beyond the empty lines allowed before it) has arrived.
    bool started() const { return m_started; }

    int error_status() const { return m_error_status; }
    const std::string& error_message() const { return m_error; }

private:
    enum class phase {
        request_line,
        header_line,
        length_body,
        chunk_size,
        chunk_data,
        chunk_end,
        trailer,
        done
    };

    bool take_line(std::string_view data, std::size_t& used, std::size_t cap, int over_status,
                   const char* what);
    void fail(int status, std::string message);
    void on_request_line(const std::string& line);
    void on_header_line(const std::string& line);
    void on_head_end();
    void on_chunk_size(const std::string& line);

    parser_limits m_limits;
    parse_status m_status = parse_status::need_more;
    phase m_phase = phase::request_line;
    std::string m_line; // the line being read, without its CRLF once complete
    bool m_line_done = false;
    std::size_t m_head_bytes = 0, m_trailer_bytes = 0;
    request_head m_head;
    std::string m_body;
    std::uint64_t m_content_length = 0, m_chunk_left = 0;
    bool m_chunked = false, m_keep_alive = true, m_expect_continue = false, m_started = false;
    int m_error_status = 0;
    std::string m_error;
};

} // namespace lorafleet::http
