// Unicode character properties and normalization for tokenizers, from ICU (libicuuc; ICU 72 on Debian 12
// = Unicode 15.0): the general categories behind the regex classes \p{L} (Lu Ll Lt Lm Lo) and \p{N}
// (Nd Nl No), the White_Space property (what Oniguruma's Unicode \s matches, U+0085 and U+00A0
// included), and NFC (the normalizer Qwen2 tokenizers ship). Pure functions; safe from any thread.
#pragma once

#include <string>
#include <string_view>

namespace lorafleet::serve {

bool is_letter(char32_t c);      // \p{L}
bool is_number(char32_t c);      // \p{N}
bool is_white_space(char32_t c); // \s (Unicode White_Space)

// `utf8` in Normalization Form C. Bytes that are not valid UTF-8 become U+FFFD first (the form is only
// defined on characters).
std::string to_nfc(std::string_view utf8);

// The Unicode version the properties above follow, e.g. "15.0".
std::string unicode_version();

} // namespace lorafleet::serve
