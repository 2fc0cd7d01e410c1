// unicode_text: see the header. ICU's errors here can only mean a broken ICU installation (its NFC data
// missing), reported as io_error rather than crashing.
#include "engine/serve/tokenizer/unicode_text.hpp"

#include "engine/core/error.hpp"
#include "engine/serve/tokenizer/utf8.hpp"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>

namespace lorafleet::serve {

bool is_letter(char32_t c) {
    return (U_GET_GC_MASK(UChar32(c)) & U_GC_L_MASK) != 0;
}

bool is_number(char32_t c) {
    return (U_GET_GC_MASK(UChar32(c)) & U_GC_N_MASK) != 0;
}

bool is_white_space(char32_t c) {
    return u_isUWhiteSpace(UChar32(c)) != 0;
}

std::string to_nfc(std::string_view utf8) {
    const std::string valid = is_valid_utf8(utf8) ? std::string(utf8) : sanitize_utf8(utf8);
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
    if (U_FAILURE(status)) throw io_error("ICU", std::string("no NFC data: ") + u_errorName(status));
    if (nfc->isNormalizedUTF8(valid, status) && U_SUCCESS(status)) return valid;
    status = U_ZERO_ERROR;
    std::string out;
    icu::StringByteSink<std::string> sink(&out, int32_t(valid.size()));
    nfc->normalizeUTF8(0, valid, sink, nullptr, status);
    if (U_FAILURE(status))
        throw io_error("ICU", std::string("NFC normalization failed: ") + u_errorName(status));
    return out;
}

std::string unicode_version() {
    UVersionInfo v;
    u_getUnicodeVersion(v);
    return std::to_string(v[0]) + "." + std::to_string(v[1]);
}

} // namespace lorafleet::serve
