// Content-Encoding of request bodies: identity, gzip (x-gzip) and deflate (zlib-wrapped, or raw as some
// clients send it), inflated with zlib. The limit is on the DECODED bytes: inflating stops as soon as the
// output would pass it, so a small "zip bomb" costs at most `max_bytes` of memory. Thread-safe (no state).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace lorafleet::http {

enum class coding { identity, gzip, deflate, unsupported };

// The coding a Content-Encoding value names (case-insensitive; "" is identity). Several codings in one
// value ("gzip, gzip") are unsupported.
coding parse_content_encoding(std::string_view value);

struct decode_result {
    int status = 0;      // 0: ok; 413: the decoded body passes max_bytes; 400: corrupt or truncated data
    std::string message; // why, when status != 0
};

// Replaces `body` by its decoded bytes. Not for coding::unsupported.
decode_result decode_body(std::string& body, coding c, std::size_t max_bytes);

} // namespace lorafleet::http
