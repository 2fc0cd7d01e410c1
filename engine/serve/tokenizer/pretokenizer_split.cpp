// pretokenizer_split: see the header. One function per regex alternative, each returning where its match
// starting at byte `i` ends (npos: no match); the pattern tries them in its order. Positions are byte
// offsets at character boundaries.
#include "engine/serve/tokenizer/pretokenizer_split.hpp"

#include "engine/serve/tokenizer/unicode_text.hpp"
#include "engine/serve/tokenizer/utf8.hpp"

#include <array>
#include <cstdint>

namespace lorafleet::serve {
namespace {

constexpr std::string_view gpt2_regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view llama3_regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)"
    R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view qwen2_regex = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|)"
                                         R"( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

constexpr std::size_t npos = std::string_view::npos;

bool letter(char32_t c) {
    return is_letter(c);
}
bool number(char32_t c) {
    return is_number(c);
}
bool space(char32_t c) {
    return is_white_space(c);
}
bool other(char32_t c) { // [^\s\p{L}\p{N}]
    return !is_white_space(c) && !is_letter(c) && !is_number(c);
}
bool newline(char32_t c) { // [\r\n]
    return c == U'\r' || c == U'\n';
}

class matcher {
public:
    matcher(split_pattern p, std::string_view s) : m_pattern(p), m_s(s) {}

    // The end of the match starting at `i`, npos when no alternative matches there.
    std::size_t match(std::size_t i) const {
        std::size_t e;
        if (m_pattern == split_pattern::gpt2) {
            if ((e = contraction(i, false)) != npos) return e;
            if ((e = optional_space_run(i, letter)) != npos) return e;
            if ((e = optional_space_run(i, number)) != npos) return e;
            if ((e = optional_space_run(i, other)) != npos) return e;
        } else {
            if ((e = contraction(i, true)) != npos) return e;
            if ((e = letters_after_one_other(i)) != npos) return e;
            if ((e = run(i, number, m_pattern == split_pattern::llama3 ? 3 : 1)) != npos) return e;
            if ((e = optional_space_run(i, other)) != npos) {
                const std::size_t nl = run(e, newline);
                return nl == npos ? e : nl;
            }
            if ((e = spaces_then_newlines(i)) != npos) return e;
        }
        if ((e = spaces_not_before_non_space(i)) != npos) return e;
        return run(i, space);
    }

    std::size_t next(std::size_t i) const { return i + next_code_point(m_s, i).length; }

private:
    char32_t at(std::size_t i) const { return next_code_point(m_s, i).value; }

    // X+ (at most `max` characters): the end of the run of characters in X from `i`.
    std::size_t run(std::size_t i, bool (*in)(char32_t), std::size_t max = SIZE_MAX) const {
        std::size_t j = i;
        for (std::size_t k = 0; k < max && j < m_s.size() && in(at(j)); ++k)
            j = next(j);
        return j > i ? j : npos;
    }

    // '(?:s|t|re|ve|m|ll|d), case-folded when `fold` ((?i): ASCII case, and long s for s).
    std::size_t contraction(std::size_t i, bool fold) const {
        if (m_s[i] != '\'') return npos;
        static constexpr std::array<std::string_view, 7> suffixes = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (std::string_view suffix : suffixes) {
            std::size_t j = i + 1;
            bool ok = true;
            for (char want : suffix) {
                if (j < m_s.size() && (m_s[j] == want || (fold && m_s[j] == char(want - 'a' + 'A')))) {
                    ++j;
                } else if (fold && want == 's' && m_s.compare(j, 2, "\xC5\xBF") == 0) { // U+017F
                    j += 2;
                } else {
                    ok = false;
                    break;
                }
            }
            if (ok) return j;
        }
        return npos;
    }

    // " ?X+": a space is only taken when X follows it (a space is never in X: the classes used here
    // exclude white space, so backing off the space cannot help).
    std::size_t optional_space_run(std::size_t i, bool (*in)(char32_t)) const {
        return run(m_s[i] == ' ' ? i + 1 : i, in);
    }

    // [^\r\n\p{L}\p{N}]?\p{L}+
    std::size_t letters_after_one_other(std::size_t i) const {
        const char32_t c = at(i);
        if (!newline(c) && !letter(c) && !number(c)) return run(next(i), letter); // c is not a letter
        return run(i, letter);
    }

    // \s*[\r\n]+: white space up to and including the last \r or \n of the white-space run at `i`.
    std::size_t spaces_then_newlines(std::size_t i) const {
        std::size_t end = npos;
        for (std::size_t j = i; j < m_s.size() && space(at(j)); j = next(j))
            if (newline(at(j))) end = next(j);
        return end;
    }

    // \s+(?!\S): the white-space run at `i`, less its last character when a non-space follows it.
    std::size_t spaces_not_before_non_space(std::size_t i) const {
        std::size_t j = i, last = npos;
        for (; j < m_s.size() && space(at(j)); j = next(j))
            last = j;
        if (j == i) return npos;
        if (j == m_s.size()) return j;
        return last > i ? last : npos;
    }

    split_pattern m_pattern;
    std::string_view m_s;
};

} // namespace

std::optional<split_pattern> recognise_split_pattern(std::string_view regex) {
    if (regex == gpt2_regex) return split_pattern::gpt2;
    if (regex == llama3_regex) return split_pattern::llama3;
    if (regex == qwen2_regex) return split_pattern::qwen2;
    return std::nullopt;
}

std::vector<std::string_view> split_pretokens(split_pattern pattern, std::string_view text) {
    const matcher m(pattern, text);
    std::vector<std::string_view> out;
    std::size_t gap = npos; // start of text no alternative matched
    for (std::size_t i = 0; i < text.size();) {
        const std::size_t e = m.match(i);
        if (e == npos) {
            if (gap == npos) gap = i;
            i = m.next(i);
            continue;
        }
        if (gap != npos) out.push_back(text.substr(gap, i - gap));
        gap = npos;
        out.push_back(text.substr(i, e - i));
        i = e;
    }
    if (gap != npos) out.push_back(text.substr(gap));
    return out;
}

} // namespace lorafleet::serve
