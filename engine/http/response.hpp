// An HTTP response as the handlers build it, and its wire form: the status line and header section
// (Date, Content-Type, Content-Length or Transfer-Encoding: chunked, Connection) plus the chunk framing
// of a streamed body. Pure functions over strings; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lorafleet::http {

using header_list = std::vector<std::pair<std::string, std::string>>;

struct response {
    int status = 200;
    std::string content_type; // "" with an empty body: no Content-Type
    std::string body;
    header_list headers; // extra fields, e.g. Retry-After, WWW-Authenticate
    bool close = false;  // close the connection after this response
};

std::string_view reason_phrase(int status);

// The status line and header section, ending with the empty line. body_length < 0: the body is chunked
// (minor 1) or runs until the connection closes (minor 0).
std::string serialize_head(int status, std::string_view content_type, const header_list& headers,
                           long long body_length, bool keep_alive, int minor);
// A whole response with Content-Length.
std::string serialize(const response& r, bool keep_alive, int minor);
// One chunk of a chunked body ("" gives nothing: an empty chunk would end the body), and the last chunk.
std::string chunk(std::string_view data);
std::string_view last_chunk();

} // namespace lorafleet::http
