// UTF-8 scanning shared by the helpers: classify the sequence starting at a byte as valid (with its
// length), incomplete (a valid prefix cut by the end of input) or invalid.
#include "engine/serve/tokenizer/utf8.hpp"

namespace lorafleet::serve {
namespace {

enum class seq_state { valid, incomplete, invalid };

struct seq_result {
    seq_state state;
    std::size_t length; // bytes of a valid sequence
};

seq_result classify(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) return {seq_state::valid, 1};
    std::size_t len;
    unsigned char lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        if (b0 == 0xE0) lo = 0xA0; // overlong
        if (b0 == 0xED) hi = 0x9F; // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        if (b0 == 0xF0) lo = 0x90; // overlong
        if (b0 == 0xF4) hi = 0x8F; // above U+10FFFF
    } else {
        return {seq_state::invalid, 1};
    }
    for (std::size_t k = 1; k < len; ++k) {
        if (i + k >= s.size()) return {seq_state::incomplete, 0};
        const auto b = static_cast<unsigned char>(s[i + k]);
        const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) return {seq_state::invalid, 1};
    }
    return {seq_state::valid, len};
}

} // namespace

bool is_valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const seq_result r = classify(s, i);
        if (r.state != seq_state::valid) return false;
        i += r.length;
    }
    return true;
}

std::string sanitize_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        const seq_result r = classify(s, i);
        if (r.state == seq_state::valid) {
            out.append(s.substr(i, r.length));
            i += r.length;
        } else {
            out.append(utf8_replacement);
            ++i;
        }
    }
    return out;
}

code_point next_code_point(std::string_view s, std::size_t i) {
    const seq_result r = classify(s, i);
    if (r.state != seq_state::valid) return {U'\uFFFD', 1};
    const auto b = [&](std::size_t k) { return char32_t(static_cast<unsigned char>(s[i + k])); };
    switch (r.length) {
    case 1:
        return {b(0), 1};
    case 2:
        return {((b(0) & 0x1F) << 6) | (b(1) & 0x3F), 2};
    case 3:
        return {((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F), 3};
    default:
        return {((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F), 4};
    }
}

std::string take_complete_utf8(std::string& pending) {
    std::string out;
    std::size_t i = 0;
    while (i < pending.size()) {
        const seq_result r = classify(pending, i);
        if (r.state == seq_state::incomplete) break;
        if (r.state == seq_state::valid) {
            out.append(pending, i, r.length);
            i += r.length;
        } else {
            out.append(utf8_replacement);
            ++i;
        }
    }
    pending.erase(0, i);
    return out;
}

} // namespace lorafleet::serve
