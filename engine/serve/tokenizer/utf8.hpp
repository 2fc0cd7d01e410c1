// UTF-8 helpers for decoding: byte-fallback and byte-level tokens can split one character across several
// tokens, so text handed to a user must be cut only at complete characters and must never contain invalid
// sequences. Validity follows RFC 3629 (no overlongs, no surrogates, nothing above U+10FFFF).
#pragma once

#include <string>
#include <string_view>

namespace lorafleet::serve {

inline constexpr std::string_view utf8_replacement = "\xEF\xBF\xBD"; // U+FFFD

bool is_valid_utf8(std::string_view s);

// Valid UTF-8 for all of `s`: each byte that does not start a valid sequence becomes U+FFFD.
std::string sanitize_utf8(std::string_view s);

// The code point that starts at byte `i` (< s.size()) of `s`, and its length in bytes. A byte that does not
// start a complete valid sequence reads as U+FFFD of length 1, so a scan always advances.
struct code_point {
    char32_t value;
    std::size_t length;
};
code_point next_code_point(std::string_view s, std::size_t i);

// Moves the complete part of `pending` to the returned text (invalid bytes as U+FFFD) and leaves in
// `pending` only a trailing incomplete sequence that more bytes could still complete (at most 3 bytes).
std::string take_complete_utf8(std::string& pending);

} // namespace lorafleet::serve
