// byte_level: see the header. Built as in GPT-2's encoder.py: the printable ranges keep their code
// points, the rest take 256, 257, ... in byte order.
#include "engine/serve/tokenizer/byte_level.hpp"

#include "engine/serve/tokenizer/utf8.hpp"

#include <array>

namespace lorafleet::serve {
namespace {

struct byte_level_tables {
    std::array<std::string, 256> chars; // [byte] UTF-8 of its character
    std::array<int, 324> bytes;         // [code point] the byte it stands for, -1 if none (all are < 324)

    byte_level_tables() {
        bytes.fill(-1);
        auto printable = [](int b) {
            return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        };
        int next = 256;
        for (int b = 0; b < 256; ++b) {
            const int cp = printable(b) ? b : next++;
            bytes[std::size_t(cp)] = b;
            std::string& s = chars[std::size_t(b)];
            if (cp < 0x80) {
                s.assign(1, char(cp));
            } else {
                s.push_back(char(0xC0 | (cp >> 6)));
                s.push_back(char(0x80 | (cp & 0x3F)));
            }
        }
    }
};

const byte_level_tables& tables() {
    static const byte_level_tables t;
    return t;
}

} // namespace

std::string_view byte_level_char(unsigned char b) {
    return tables().chars[b];
}

std::string byte_level_encode(std::string_view bytes) {
    const auto& t = tables();
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes)
        out += t.chars[b];
    return out;
}

bool byte_level_decode(std::string_view text, std::string& out) {
    const auto& t = tables();
    std::string bytes;
    bytes.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        const code_point c = next_code_point(text, i);
        if (c.value >= t.bytes.size() || t.bytes[c.value] < 0) return false;
        bytes.push_back(char(t.bytes[c.value]));
        i += c.length;
    }
    out += bytes;
    return true;
}

} // namespace lorafleet::serve
