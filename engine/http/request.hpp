// One HTTP/1.1 request as the server sees it once it has been read: the request line, the header fields
// (names lower-cased, values trimmed, in arrival order) and the decoded body (chunked framing removed,
// Content-Encoding inflated). Plain data; the parser (request_parser.hpp) is what guarantees its shape.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lorafleet::http {

struct request_head {
    std::string method; // e.g. "GET", "POST" (case-sensitive, as RFC 9110 says)
    std::string target; // the request-target as sent, e.g. "/v1/models?x=1"
    std::string path;   // target up to '?'
    std::string query;  // after '?', without it
    int minor = 1;      // HTTP/1.<minor>: 0 or 1
    std::vector<std::pair<std::string, std::string>> headers; // lower-case name, trimmed value

    // The first value of a header (by lower-case name), or "" when absent.
    std::string_view header(std::string_view lower_name) const {
        for (const auto& [n, v] : headers)
            if (n == lower_name) return v;
        return {};
    }
    bool has_header(std::string_view lower_name) const {
        for (const auto& h : headers)
            if (h.first == lower_name) return true;
        return false;
    }
};

struct request : request_head {
    std::string body;
    bool keep_alive = true; // the client allows another request on this connection after the response
};

} // namespace lorafleet::http
