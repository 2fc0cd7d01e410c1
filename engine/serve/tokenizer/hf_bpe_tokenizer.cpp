// A HuggingFace `tokenizer.json` tokenizer with a BPE model, in both families: SentencePiece-style
// (Llama 2/Mistral/TinyStories: Metaspace, byte fallback) and byte-level (GPT-2/Llama 3/Qwen2). The parts of
// the file it runs are parsed into small step lists, and anything else in the file is refused with
// unsupported_error naming it, because a silently skipped normalizer or pre-tokenizer gives wrong ids.
// Supported: normalizers Prepend, Replace (string patterns), NFC, Sequence; pre-tokenizers Metaspace
// (alone or in a Sequence), or byte-level: ByteLevel (add_prefix_space, use_regex = the GPT-2 regex)
// after any number of Split steps whose regex is one engine/serve/tokenizer/pretokenizer_split.hpp recognises
// (GPT-2, Llama 3, Qwen2; behavior Isolated, not inverted); BPE with merges ("a b" or ["a", "b"]) by rank,
// unk with fuse_unk, byte_fallback to <0xXX> pieces when the vocabulary has them (else unk),
// ignore_merges; added tokens (lstrip/rstrip); TemplateProcessing (and the no-op ByteLevel processor);
// decoders Replace, ByteFallback, Fuse, Strip, Metaspace, ByteLevel, Sequence.
// Not supported: other Split regexes or String patterns, other Split behaviours, Metaspace mixed with
// ByteLevel, normalization forms other than NFC, Lowercase/Strip normalizers, WordPiece and Unigram models.
// Text is split on added tokens first and each remaining section is normalized and pre-tokenized on its
// own (as the Rust library and tokenizers.js do); with ByteLevel each pre-token's bytes are mapped to
// GPT-2's byte characters (engine/serve/tokenizer/byte_level.hpp) before BPE. BPE merges follow the Rust
// implementation: repeatedly merge the pair of lowest rank, leftmost first.
#include "engine/core/error.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/serve/tokenizer/byte_level.hpp"
#include "engine/serve/tokenizer/pretokenizer_split.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "engine/serve/tokenizer/unicode_text.hpp"
#include "engine/serve/tokenizer/utf8.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <unordered_map>

namespace lorafleet::serve {
namespace {

using json = nlohmann::json;
constexpr std::string_view default_metaspace = "\xE2\x96\x81"; // U+2581 LOWER ONE EIGHTH BLOCK

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    if (from.empty()) return std::string(s);
    std::string out;
    std::size_t i = 0;
    for (std::size_t p; (p = s.find(from, i)) != std::string_view::npos; i = p + from.size()) {
        out.append(s.substr(i, p - i));
        out.append(to);
    }
    out.append(s.substr(i));
    return out;
}

std::size_t utf8_char_length(unsigned char lead) {
    if (lead < 0x80) return 1;
    if ((lead >> 5) == 0x6) return 2;
    if ((lead >> 4) == 0xE) return 3;
    if ((lead >> 3) == 0x1E) return 4;
    return 1; // a stray continuation or invalid byte: a character of its own
}

// "<0xAB>" -> 0xAB; -1 for anything else.
int parse_byte_piece(std::string_view t) {
    if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
    auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(t[3]), lo = hex(t[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// ---- The parsed pipeline --------------------------------------------------------------------------------
struct normalizer_step {
    enum class kind { prepend, replace, nfc } type;
    std::string pattern; // replace: what to find
    std::string content; // prepend: the prefix; replace: the replacement
};

enum class prepend_scheme { always, first, never };

struct metaspace_pre {
    std::string replacement{default_metaspace};
    prepend_scheme prepend = prepend_scheme::always;
    bool split = true;
};

// One step of a byte-level pre-tokenizer pipeline, applied to every piece the steps before it left.
struct pre_step {
    enum class kind { split, byte_level } type;
    split_pattern pattern = split_pattern::gpt2; // split
    bool add_prefix_space = false; // byte_level: a space before each piece not starting with one
    bool use_regex = true;         // byte_level: split with the GPT-2 regex before mapping
};

struct decoder_step {
    enum class kind { replace, byte_fallback, fuse, strip, metaspace, byte_level } type;
    std::string pattern, content;   // replace: pattern -> content; strip: content; metaspace: replacement
    int start = 0, stop = 0;        // strip
    bool strip_first_space = false; // metaspace: prepend_scheme != never
};

struct added_token {
    int id = 0;
    std::string content;
    bool special = false;
    bool lstrip = false, rstrip = false;
};

class HfBpeTokenizer final : public Tokenizer {
public:
    HfBpeTokenizer(const json& j, const std::string& where, special_tokens special);

    std::vector<int> encode(std::string_view text, bool add_special) const override;
    std::string decode_bytes(std::span<const int> ids, bool at_text_start, bool skip_special) const override {
        return decode_impl(ids, at_text_start, false, skip_special);
    }
    std::string decode(std::span<const int> ids, bool skip_special) const override {
        return sanitize_utf8(decode_impl(ids, true, true, skip_special));
    }
    int vocab_size() const override { return static_cast<int>(m_pieces.size()); }
    std::string token_text(int id) const override { return m_pieces.at(std::size_t(id)); }
    std::optional<int> token_id(std::string_view text) const override;
    bool is_special(int id) const override {
        return id >= 0 && id < vocab_size() && m_special_flag[std::size_t(id)];
    }

private:
    void parse_model(const json& m);
    void parse_normalizer(const json& n);
    void parse_pre_tokenizer(const json& p);
    void parse_post_processor(const json& p);
    void parse_decoder(const json& d);

    void encode_section(std::string_view text, bool first_section, std::vector<int>& out) const;
    void encode_pieces(std::string text, std::vector<int>& out) const;
    void bpe(std::string_view word, std::vector<int>& out) const;
    std::string decode_impl(std::span<const int> ids, bool at_start, bool at_end, bool skip_special) const;
    [[noreturn]] void unsupported(const std::string& what) const { throw unsupported_error(m_where, what); }

    std::string m_where;
    // model
    std::unordered_map<std::string, int> m_vocab; // piece -> id (model vocabulary)
    std::vector<std::string> m_pieces;            // [vocab] id -> piece (added tokens included)
    std::vector<char> m_special_flag;             // [vocab] 1 for special added tokens
    std::unordered_map<std::uint64_t, std::pair<int, int>>
        m_merges;                      // (left id, right id) -> (rank, merged id)
    std::array<int, 256> m_byte_ids{}; // <0xXX> piece ids, -1 when the vocabulary lacks one
    int m_unk = -1;
    bool m_fuse_unk = false, m_byte_fallback = false, m_ignore_merges = false;
    // pipeline
    std::vector<added_token> m_added;
    std::vector<normalizer_step> m_normalizer;
    std::optional<metaspace_pre> m_metaspace;
    std::vector<pre_step> m_pre_steps; // Split... then ByteLevel; empty when Metaspace (or nothing) runs
    bool m_byte_level = false;         // the pipeline ends in ByteLevel
    bool m_has_template = false;
    std::vector<int> m_template_prefix, m_template_suffix; // ids around a single sequence
    bool m_has_decoder = false;
    std::vector<decoder_step> m_decoder;
    // Cache of whole-word encodings: BPE dominates encoding time and words repeat a lot.
    mutable std::mutex m_cache_mutex;
    mutable std::unordered_map<std::string, std::vector<int>> m_word_cache;
};

// ---- Parsing ------------------------------------------------------------------------------------------
const json& field(const json& j, const char* key, const std::string& where) {
    auto it = j.find(key);
    if (it == j.end()) throw format_error(where, std::string("missing key ") + key);
    return *it;
}

std::string string_pattern(const json& step, const std::string& where) {
    const json& p = field(step, "pattern", where);
    if (p.is_object() && p.contains("String") && p["String"].is_string())
        return p["String"].get<std::string>();
    throw unsupported_error(where, "only string patterns ({\"String\": ...}) are supported in " +
                                       step.value("type", std::string("?")) + ", got " +
                                       (p.is_object() ? "another kind of pattern" : "no object"));
}

prepend_scheme parse_prepend(const json& j) {
    if (auto it = j.find("prepend_scheme"); it != j.end() && it->is_string()) {
        const auto s = it->get<std::string>();
        return s == "never"   ? prepend_scheme::never
               : s == "first" ? prepend_scheme::first
                              : prepend_scheme::always;
    }
    if (auto it = j.find("add_prefix_space"); it != j.end() && it->is_boolean())
        return it->get<bool>() ? prepend_scheme::always : prepend_scheme::never;
    return prepend_scheme::always;
}

HfBpeTokenizer::HfBpeTokenizer(const json& j, const std::string& where, special_tokens special)
    : m_where(where) {
    if (!j.is_object()) throw format_error(where, "a tokenizer.json must hold a JSON object");
    parse_model(field(j, "model", where));
    if (auto it = j.find("added_tokens"); it != j.end() && it->is_array()) {
        for (const auto& t : *it) {
            added_token a;
            if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
                !t.contains("content") || !t["content"].is_string())
                throw format_error(where, "added_tokens entries need an integer id and a content string");
            a.id = t["id"].get<int>();
            a.content = t["content"].get<std::string>();
            a.special = t.value("special", false);
            a.lstrip = t.value("lstrip", false);
            a.rstrip = t.value("rstrip", false);
            if (a.id < 0 || a.id >= (1 << 24) || a.content.empty())
                throw format_error(where, "added token with id " + std::to_string(a.id) +
                                              " has an id outside [0, 2^24) or empty content");
            if (std::size_t(a.id) >= m_pieces.size()) {
                m_pieces.resize(std::size_t(a.id) + 1);
                m_special_flag.resize(std::size_t(a.id) + 1, 0);
            }
            m_pieces[std::size_t(a.id)] = a.content;
            m_special_flag[std::size_t(a.id)] = a.special ? 1 : 0;
            m_added.push_back(std::move(a));
        }
    }
    // Longest content first, so "<|end|>" never shadows "<|end|>x" at the same position.
    std::stable_sort(m_added.begin(), m_added.end(), [](const added_token& a, const added_token& b) {
        return a.content.size() > b.content.size();
    });
    if (auto it = j.find("normalizer"); it != j.end()) parse_normalizer(*it);
    if (auto it = j.find("pre_tokenizer"); it != j.end()) parse_pre_tokenizer(*it);
    if (m_metaspace && !m_pre_steps.empty())
        unsupported("a Metaspace pre-tokenizer together with Split/ByteLevel is not supported");
    if (auto it = j.find("post_processor"); it != j.end()) parse_post_processor(*it);
    if (auto it = j.find("decoder"); it != j.end()) parse_decoder(*it);
    // Without config files, the template's first special token is the BOS it adds.
    set_special(std::move(special), m_template_prefix.empty() ? -1 : m_template_prefix.front(), -1);
}

void HfBpeTokenizer::parse_model(const json& m) {
    if (!m.is_object()) throw format_error(m_where, "model must be an object");
    const std::string type = m.value("type", m.contains("merges") ? std::string("BPE") : std::string());
    if (type != "BPE") unsupported("tokenizer model type '" + type + "' is not supported (only BPE)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
        if (auto it = m.find(key); it != m.end() && it->is_string() && !it->get<std::string>().empty())
            unsupported(std::string("BPE ") + key + " is not supported");
    if (auto it = m.find("dropout"); it != m.end() && it->is_number() && it->get<double>() > 0)
        unsupported("BPE dropout is not supported at inference");

    const json& vocab = field(m, "vocab", m_where);
    if (!vocab.is_object()) throw format_error(m_where, "model.vocab must be an object");
    for (const auto& [piece, id] : vocab.items()) {
        if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() >= (1 << 24))
            throw format_error(m_where, "model.vocab[" + piece + "] must be an id below 2^24");
        const auto i = std::size_t(id.get<int>());
        if (i >= m_pieces.size()) {
            m_pieces.resize(i + 1);
            m_special_flag.resize(i + 1, 0);
        }
        m_pieces[i] = piece;
        m_vocab.emplace(piece, int(i));
    }
    m_byte_ids.fill(-1);
    char name[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        if (auto it = m_vocab.find(name); it != m_vocab.end()) m_byte_ids[std::size_t(b)] = it->second;
    }

    const json& merges = field(m, "merges", m_where);
    if (!merges.is_array()) throw format_error(m_where, "model.merges must be a list");
    int rank = 0;
    for (const auto& e : merges) {
        std::string left, right;
        if (e.is_string()) { // "left right"
            const auto s = e.get<std::string>();
            const auto sp = s.find(' ');
            if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
                throw format_error(m_where, "merge " + std::to_string(rank) +
                                                " is not two pieces separated by one space");
            left = s.substr(0, sp);
            right = s.substr(sp + 1);
        } else if (e.is_array() && e.size() == 2 && e[0].is_string() &&
                   e[1].is_string()) { // ["left", "right"]
            left = e[0].get<std::string>();
            right = e[1].get<std::string>();
        } else {
            throw format_error(m_where, "merge " + std::to_string(rank) +
                                            " is neither \"left right\" nor [\"left\", \"right\"]");
        }
        auto l = m_vocab.find(left), r = m_vocab.find(right), lr = m_vocab.find(left + right);
        if (l == m_vocab.end() || r == m_vocab.end() || lr == m_vocab.end())
            throw format_error(m_where, "merge " + std::to_string(rank) +
                                            " uses a piece that is not in the vocabulary");
        const std::uint64_t key = (std::uint64_t(std::uint32_t(l->second)) << 32) | std::uint32_t(r->second);
        m_merges.emplace(key, std::make_pair(rank++, lr->second)); // the first (best) rank wins on repeats
    }

    if (auto it = m.find("unk_token"); it != m.end() && it->is_string()) {
        auto u = m_vocab.find(it->get<std::string>());
        if (u == m_vocab.end()) throw format_error(m_where, "model.unk_token is not in the vocabulary");
        m_unk = u->second;
    }
    auto flag = [&](const char* key) {
        auto it = m.find(key);
        return it != m.end() && it->is_boolean() && it->get<bool>();
    };
    m_fuse_unk = flag("fuse_unk");
    m_byte_fallback = flag("byte_fallback");
    m_ignore_merges = flag("ignore_merges");
}

void HfBpeTokenizer::parse_normalizer(const json& n) {
    if (n.is_null()) return;
    const std::string type = n.value("type", std::string());
    if (type == "Sequence") {
        for (const auto& s : field(n, "normalizers", m_where))
            parse_normalizer(s);
    } else if (type == "Prepend") {
        m_normalizer.push_back(
            {normalizer_step::kind::prepend, "", field(n, "prepend", m_where).get<std::string>()});
    } else if (type == "Replace") {
        m_normalizer.push_back({normalizer_step::kind::replace, string_pattern(n, m_where),
                                field(n, "content", m_where).get<std::string>()});
    } else if (type == "NFC") {
        m_normalizer.push_back({normalizer_step::kind::nfc, "", ""});
    } else {
        unsupported("normalizer '" + type + "' is not supported");
    }
}

void HfBpeTokenizer::parse_pre_tokenizer(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.value("type", std::string());
    if (type == "Sequence") {
        for (const auto& s : field(p, "pretokenizers", m_where))
            parse_pre_tokenizer(s);
    } else if (type == "Metaspace") {
        if (m_metaspace) unsupported("more than one Metaspace pre-tokenizer");
        metaspace_pre m;
        if (auto it = p.find("replacement"); it != p.end() && it->is_string())
            m.replacement = it->get<std::string>();
        m.prepend = parse_prepend(p);
        m.split = p.value("split", true);
        m_metaspace = m;
    } else if (type == "ByteLevel") {
        if (m_byte_level) unsupported("more than one ByteLevel pre-tokenizer");
        pre_step s{pre_step::kind::byte_level};
        s.add_prefix_space = p.value("add_prefix_space", true); // the library's defaults
        s.use_regex = p.value("use_regex", true);
        m_pre_steps.push_back(s);
        m_byte_level = true;
    } else if (type == "Split") {
        if (m_byte_level) unsupported("a Split pre-tokenizer after ByteLevel is not supported");
        const json& pattern = field(p, "pattern", m_where);
        if (!pattern.is_object() || !pattern.contains("Regex") || !pattern["Regex"].is_string())
            unsupported(
                "Split pre-tokenizer pattern is not a {\"Regex\": ...} object (only the GPT-2, Llama 3 "
                "and Qwen2 regexes are supported)");
        const std::string regex = pattern["Regex"].get<std::string>();
        const auto known = recognise_split_pattern(regex);
        if (!known)
            unsupported("Split pre-tokenizer regex (" + std::to_string(regex.size()) +
                        " bytes) is not supported (only the GPT-2, Llama 3 and Qwen2 regexes)");
        const std::string behavior = p.value("behavior", std::string("Isolated"));
        if (behavior != "Isolated")
            unsupported("Split pre-tokenizer behavior '" + behavior + "' is not supported (only Isolated)");
        if (p.value("invert", false)) unsupported("an inverted Split pre-tokenizer is not supported");
        pre_step s{pre_step::kind::split};
        s.pattern = *known;
        m_pre_steps.push_back(s);
    } else {
        unsupported("pre-tokenizer '" + type + "' is not supported");
    }
}

void HfBpeTokenizer::parse_post_processor(const json& p) {
    if (p.is_null()) return;
    const std::string type = p.value("type", std::string());
    if (type == "Sequence") {
        for (const auto& s : field(p, "processors", m_where))
            parse_post_processor(s);
    } else if (type == "ByteLevel") {
        // Only adjusts offsets, which we do not report.
    } else if (type == "TemplateProcessing") {
        const json& specials = p.contains("special_tokens") ? p["special_tokens"] : json::object();
        bool after = false;
        m_has_template = true;
        for (const auto& item : field(p, "single", m_where)) {
            if (item.contains("Sequence")) {
                after = true;
            } else if (item.contains("SpecialToken")) {
                const std::string name = item["SpecialToken"].value("id", std::string());
                auto st = specials.find(name);
                if (st == specials.end() || !st->contains("ids") || !(*st)["ids"].is_array())
                    throw format_error(m_where, "a post_processor special token has no ids");
                for (const auto& id : (*st)["ids"])
                    (after ? m_template_suffix : m_template_prefix).push_back(id.get<int>());
            } else {
                throw format_error(m_where,
                                   "a post_processor template item is neither Sequence nor SpecialToken");
            }
        }
    } else {
        unsupported("post-processor '" + type + "' is not supported");
    }
}

void HfBpeTokenizer::parse_decoder(const json& d) {
    if (d.is_null()) return;
    m_has_decoder = true;
    const std::string type = d.value("type", std::string());
    decoder_step s{};
    if (type == "Sequence") {
        for (const auto& x : field(d, "decoders", m_where))
            parse_decoder(x);
        return;
    } else if (type == "Replace") {
        s.type = decoder_step::kind::replace;
        s.pattern = string_pattern(d, m_where);
        s.content = field(d, "content", m_where).get<std::string>();
    } else if (type == "ByteFallback") {
        s.type = decoder_step::kind::byte_fallback;
    } else if (type == "Fuse") {
        s.type = decoder_step::kind::fuse;
    } else if (type == "Strip") {
        s.type = decoder_step::kind::strip;
        s.content = field(d, "content", m_where).get<std::string>();
        s.start = d.value("start", 0);
        s.stop = d.value("stop", 0);
    } else if (type == "Metaspace") {
        s.type = decoder_step::kind::metaspace;
        s.content = d.value("replacement", std::string(default_metaspace));
        s.strip_first_space = parse_prepend(d) != prepend_scheme::never;
    } else if (type == "ByteLevel") {
        s.type = decoder_step::kind::byte_level; // its options only matter for offsets
    } else {
        unsupported("decoder '" + type + "' is not supported");
    }
    m_decoder.push_back(std::move(s));
}

std::optional<int> HfBpeTokenizer::token_id(std::string_view text) const {
    for (const auto& a : m_added)
        if (a.content == text) return a.id;
    if (auto it = m_vocab.find(std::string(text)); it != m_vocab.end()) return it->second;
    return std::nullopt;
}

// ---- Encoding -----------------------------------------------------------------------------------------
std::vector<int> HfBpeTokenizer::encode(std::string_view text, bool add_special) const {
    std::vector<int> out;
    // tokenizer_config's add_bos_token / add_eos_token, when given, decide (transformers rebuilds the
    // template from them for Llama tokenizers); otherwise the file's template does.
    const bool explicit_flags = m_special.add_bos.has_value() || m_special.add_eos.has_value();
    if (add_special) {
        if (explicit_flags) {
            if (m_special.add_bos.value_or(false) && m_special.bos >= 0) out.push_back(m_special.bos);
        } else {
            out.insert(out.end(), m_template_prefix.begin(), m_template_prefix.end());
        }
    }
    // Split on added tokens (earliest match, longest first), encoding the text between them.
    std::size_t section_start = 0, pos = 0;
    bool first_section = true;
    while (pos < text.size()) {
        const added_token* hit = nullptr;
        for (const auto& a : m_added)
            if (text.compare(pos, a.content.size(), a.content) == 0) {
                hit = &a;
                break;
            }
        if (!hit) {
            ++pos;
            continue;
        }
        std::size_t before_end = pos, after = pos + hit->content.size();
        if (hit->lstrip)
            while (before_end > section_start && is_space(text[before_end - 1]))
                --before_end;
        if (hit->rstrip)
            while (after < text.size() && is_space(text[after]))
                ++after;
        if (before_end > section_start) {
            encode_section(text.substr(section_start, before_end - section_start), first_section, out);
        }
        first_section = false;
        out.push_back(hit->id);
        section_start = pos = after;
    }
    if (section_start < text.size()) encode_section(text.substr(section_start), first_section, out);
    if (add_special) {
        if (explicit_flags) {
            if (m_special.add_eos.value_or(false) && !m_special.eos.empty())
                out.push_back(m_special.eos.front());
        } else {
            out.insert(out.end(), m_template_suffix.begin(), m_template_suffix.end());
        }
    }
    return out;
}

void HfBpeTokenizer::encode_section(std::string_view section, bool first_section,
                                    std::vector<int>& out) const {
    std::string text(section);
    for (const auto& n : m_normalizer) {
        if (n.type == normalizer_step::kind::prepend) {
            if (!text.empty()) text.insert(0, n.content);
        } else if (n.type == normalizer_step::kind::nfc) {
            text = to_nfc(text);
        } else {
            text = replace_all(text, n.pattern, n.content);
        }
    }
    if (!m_pre_steps.empty()) {
        encode_pieces(std::move(text), out);
        return;
    }
    if (!m_metaspace) {
        bpe(text, out);
        return;
    }
    const metaspace_pre& m = *m_metaspace;
    text = replace_all(text, " ", m.replacement);
    const bool prepend =
        m.prepend == prepend_scheme::always || (m.prepend == prepend_scheme::first && first_section);
    if (prepend && !text.empty() && text.compare(0, m.replacement.size(), m.replacement) != 0)
        text.insert(0, m.replacement);
    if (!m.split) {
        bpe(text, out);
        return;
    }
    // Split before every replacement character: each word but the first starts with it.
    std::size_t begin = 0;
    for (std::size_t p = text.find(m.replacement, 1); p != std::string::npos;
         p = text.find(m.replacement, p + 1)) {
        if (p > begin) bpe(std::string_view(text).substr(begin, p - begin), out);
        begin = p;
    }
    if (begin < text.size()) bpe(std::string_view(text).substr(begin), out);
}

// The byte-level pipeline: each step cuts every piece further; ByteLevel then maps each piece's bytes to
// their characters, which is the alphabet the vocabulary is written in.
void HfBpeTokenizer::encode_pieces(std::string text, std::vector<int>& out) const {
    std::vector<std::string> pieces;
    pieces.push_back(std::move(text));
    for (const pre_step& s : m_pre_steps) {
        std::vector<std::string> next;
        for (std::string& piece : pieces) {
            if (piece.empty()) continue;
            if (s.type == pre_step::kind::split) {
                for (std::string_view v : split_pretokens(s.pattern, piece))
                    next.emplace_back(v);
                continue;
            }
            if (s.add_prefix_space && piece[0] != ' ') piece.insert(0, 1, ' ');
            if (s.use_regex) {
                for (std::string_view v : split_pretokens(split_pattern::gpt2, piece))
                    next.push_back(byte_level_encode(v));
            } else {
                next.push_back(byte_level_encode(piece));
            }
        }
        pieces = std::move(next);
    }
    for (const std::string& piece : pieces)
        bpe(piece, out);
}

void HfBpeTokenizer::bpe(std::string_view word, std::vector<int>& out) const {
    if (word.empty()) return;
    if (m_ignore_merges)
        if (auto it = m_vocab.find(std::string(word)); it != m_vocab.end()) {
            out.push_back(it->second);
            return;
        }
    constexpr std::size_t max_cached_word = 64;
    if (word.size() <= max_cached_word) {
        std::lock_guard lock(m_cache_mutex);
        if (auto it = m_word_cache.find(std::string(word)); it != m_word_cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }

    // Initial symbols: one per character, else its byte pieces, else unk (consecutive unks fused).
    struct symbol {
        int id;
        int prev, next; // doubly linked list over the live symbols; -1 at the ends
        bool alive;
    };
    std::vector<symbol> sym;
    int pending_unk = 0; // characters waiting to become one unk symbol (fuse_unk)
    auto flush_unk = [&] {
        if (pending_unk > 0) sym.push_back({m_unk, 0, 0, true});
        pending_unk = 0;
    };
    std::string ch;
    for (std::size_t i = 0; i < word.size();) {
        const std::size_t len =
            std::min(utf8_char_length(static_cast<unsigned char>(word[i])), word.size() - i);
        ch.assign(word.substr(i, len));
        i += len;
        if (auto it = m_vocab.find(ch); it != m_vocab.end()) {
            flush_unk();
            sym.push_back({it->second, 0, 0, true});
            continue;
        }
        if (m_byte_fallback) {
            bool all = true;
            for (unsigned char b : ch)
                all = all && m_byte_ids[b] >= 0;
            if (all) {
                flush_unk();
                for (unsigned char b : ch)
                    sym.push_back({m_byte_ids[b], 0, 0, true});
                continue;
            }
        }
        if (m_unk < 0) continue; // no unk token: the character is dropped
        if (!m_fuse_unk) flush_unk();
        ++pending_unk;
    }
    flush_unk();
    for (std::size_t i = 0; i < sym.size(); ++i) {
        sym[i].prev = int(i) - 1;
        sym[i].next = i + 1 < sym.size() ? int(i) + 1 : -1;
    }

    // Merge the lowest-rank pair, leftmost first, until no pair of neighbours has a merge.
    struct candidate {
        int rank, pos, merged;
        bool operator>(const candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<candidate, std::vector<candidate>, std::greater<candidate>> queue;
    auto lookup = [&](int left, int right) -> const std::pair<int, int>* {
        auto it = m_merges.find((std::uint64_t(std::uint32_t(left)) << 32) | std::uint32_t(right));
        return it == m_merges.end() ? nullptr : &it->second;
    };
    auto push_pair = [&](int pos) {
        if (pos < 0 || sym[std::size_t(pos)].next < 0) return;
        if (const auto* m = lookup(sym[std::size_t(pos)].id, sym[std::size_t(sym[std::size_t(pos)].next)].id))
            queue.push({m->first, pos, m->second});
    };
    for (std::size_t i = 0; i + 1 < sym.size(); ++i)
        push_pair(int(i));
    while (!queue.empty()) {
        const candidate top = queue.top();
        queue.pop();
        symbol& left = sym[std::size_t(top.pos)];
        if (!left.alive || left.next < 0) continue;
        symbol& right = sym[std::size_t(left.next)];
        const auto* m = lookup(left.id, right.id);
        if (!m || m->second != top.merged) continue; // stale: a neighbour changed since it was queued
        left.id = top.merged;
        right.alive = false;
        left.next = right.next;
        if (right.next >= 0) sym[std::size_t(right.next)].prev = top.pos;
        push_pair(left.prev);
        push_pair(top.pos);
    }

    const std::size_t first_out = out.size();
    for (const symbol& s : sym)
        if (s.alive) out.push_back(s.id);
    if (word.size() <= max_cached_word) {
        std::lock_guard lock(m_cache_mutex);
        if (m_word_cache.size() >= 50000) m_word_cache.clear(); // bounded; a rebuild is cheap
        m_word_cache.emplace(std::string(word),
                             std::vector<int>(out.begin() + std::ptrdiff_t(first_out), out.end()));
    }
}

// ---- Decoding -----------------------------------------------------------------------------------------
std::string HfBpeTokenizer::decode_impl(std::span<const int> ids, bool at_start, bool at_end,
                                        bool skip_special) const {
    std::vector<std::string> toks;
    toks.reserve(ids.size());
    for (int id : ids) {
        if (id < 0 || id >= vocab_size())
            throw usage_error(m_where, "token id " + std::to_string(id) + " is outside the vocabulary");
        if (skip_special && m_special_flag[std::size_t(id)]) continue;
        toks.push_back(m_pieces[std::size_t(id)]);
    }
    if (!m_has_decoder) { // the library's default: pieces joined by spaces
        std::string out;
        for (std::size_t i = 0; i < toks.size(); ++i)
            out += (i > 0 || !at_start ? " " : "") + toks[i];
        return out;
    }
    bool fused = false; // after Fuse, toks holds one string: the whole text
    for (const decoder_step& s : m_decoder) {
        switch (s.type) {
        case decoder_step::kind::replace:
            for (auto& t : toks)
                t = replace_all(t, s.pattern, s.content);
            break;
        case decoder_step::kind::byte_fallback:
            for (auto& t : toks)
                if (const int b = parse_byte_piece(t); b >= 0) t.assign(1, static_cast<char>(b));
            break;
        case decoder_step::kind::fuse: {
            std::string all;
            for (const auto& t : toks)
                all += t;
            toks.assign(1, std::move(all));
            fused = true;
            break;
        }
        case decoder_step::kind::strip:
            // On the fused text, the leading strip belongs to the start of the text and the trailing one
            // to its end; on separate pieces it applies to each.
            for (auto& t : toks) {
                if (!fused || at_start)
                    for (int k = 0; k < s.start && t.compare(0, s.content.size(), s.content) == 0; ++k)
                        t.erase(0, s.content.size());
                if (!fused || at_end)
                    for (int k = 0; k < s.stop && t.size() >= s.content.size() &&
                                    t.compare(t.size() - s.content.size(), s.content.size(), s.content) == 0;
                         ++k)
                        t.erase(t.size() - s.content.size());
            }
            break;
        case decoder_step::kind::byte_level: {
            // Per token: its characters back to bytes, or the token as written when some character is not
            // a byte character (an added token like " foo"); then one string, as the library returns.
            std::string all;
            for (const auto& t : toks)
                if (!byte_level_decode(t, all)) all += t;
            toks.assign(1, std::move(all));
            fused = true;
            break;
        }
        case decoder_step::kind::metaspace:
            for (std::size_t i = 0; i < toks.size(); ++i) {
                toks[i] = replace_all(toks[i], s.content, " ");
                if (i == 0 && at_start && s.strip_first_space && !toks[i].empty() && toks[i][0] == ' ')
                    toks[i].erase(0, 1);
            }
            break;
        }
    }
    std::string out;
    for (const auto& t : toks)
        out += t;
    return out;
}

std::string read_file_text(const std::filesystem::path& path) {
    return io::read_text_file(path, io::max_tokenizer_file_bytes, "tokenizer.json"); // regular files only
}

} // namespace

// ---- Factories ----------------------------------------------------------------------------------------
std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view json_text, const std::string& where,
                                              special_tokens special) {
    json j = json::parse(json_text, nullptr, false);
    if (j.is_discarded()) throw format_error(where, "not valid JSON");
    try {
        return std::make_unique<HfBpeTokenizer>(j, where, std::move(special));
    } catch (const json::type_error&) { // a value of the wrong JSON type deep inside (never quoted)
        throw format_error(where, "a value has the wrong JSON type (e.g. a string where a number belongs)");
    } catch (const json::exception&) {
        throw format_error(where, "a value is out of range or missing");
    }
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& path, special_tokens special) {
    return parse_hf_tokenizer(read_file_text(path), path_string(path), std::move(special));
}

} // namespace lorafleet::serve
