// The byte <-> character map of byte-level BPE (GPT-2's bytes_to_unicode, used unchanged by Llama 3 and
// Qwen2): each of the 256 byte values stands for one printable Unicode character, so any byte string
// becomes text a BPE vocabulary can hold, and back. Printable Latin-1 bytes (! .. ~, ¡ .. ¬, ® .. ÿ) map
// to themselves; the other 68 bytes map, in increasing order, to U+0100, U+0101, ... (space -> U+0120 'Ġ',
// newline -> U+010A 'Ċ'). The map is a bijection; tables are built once and read-only after that.
#pragma once

#include <string>
#include <string_view>

namespace lorafleet::serve {

// The character byte `b` stands for, as UTF-8 (1 or 2 bytes).
std::string_view byte_level_char(unsigned char b);

// Every byte of `bytes` replaced by its character.
std::string byte_level_encode(std::string_view bytes);

// The bytes `text` stands for, appended to `out`; false (and `out` unchanged) when some character of
// `text` is not one of the 256 (an added token written in plain text, for instance).
bool byte_level_decode(std::string_view text, std::string& out);

} // namespace lorafleet::serve
