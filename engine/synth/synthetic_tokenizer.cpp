// synthetic_tokenizer: see the header. The vocabulary is assembled as a list of pieces indexed by id, then
// written as JSON by hand for the two big parts (vocab, merges): nlohmann's ordered_json searches linearly
// on insert, which is quadratic for a 128k vocabulary.
#include "engine/synth/synthetic_tokenizer.hpp"

#include "engine/core/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace lorafleet::synth {
namespace {

using ordered_json = nlohmann::ordered_json;

constexpr std::string_view letters_by_frequency = "etaoinsrhldcumfpgwybvkxjqz";
constexpr std::string_view bos_text = "<s>";
constexpr std::string_view eos_text = "</s>";
constexpr int specials = 2;
constexpr int merge_levels = 4; // pieces of up to 4 letters (or Ġ + 3 letters)

// GPT-2's bytes_to_unicode as UTF-8: printable Latin-1 bytes keep their code point, the other 68 take
// 256, 257, ... in byte order.
std::array<std::string, 256> byte_chars() {
    std::array<std::string, 256> chars;
    int next = 256;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        const int cp = printable ? b : next++;
        std::string& s = chars[std::size_t(b)];
        if (cp < 0x80) {
            s.assign(1, char(cp));
        } else {
            s.push_back(char(0xC0 | (cp >> 6)));
            s.push_back(char(0x80 | (cp & 0x3F)));
        }
    }
    return chars;
}

struct merge_piece {
    std::string left;
    std::string right;
};

// Candidate words of each length, level by level: level 1 is Ġ and the letters, level k + 1 every
// (level-k word, letter); within a level the n-grams of frequent letters come first (sum of the letters'
// ranks, ties in generation order).
class candidate_words {
public:
    explicit candidate_words(const std::string& space_char) {
        m_level.push_back({space_char, 0});
        for (std::size_t i = 0; i < letters_by_frequency.size(); ++i)
            m_level.push_back({std::string(1, letters_by_frequency[i]), int(i)});
    }
    // The next level's words in order; empty after the last level.
    std::vector<std::string> next_level() {
        if (++m_depth > merge_levels) return {};
        std::vector<word> next;
        next.reserve(m_level.size() * letters_by_frequency.size());
        for (const auto& w : m_level)
            for (std::size_t i = 0; i < letters_by_frequency.size(); ++i)
                next.push_back({w.text + letters_by_frequency[i], w.score + int(i)});
        std::stable_sort(next.begin(), next.end(),
                         [](const word& a, const word& b) { return a.score < b.score; });
        m_level = std::move(next);
        std::vector<std::string> out;
        out.reserve(m_level.size());
        for (const auto& w : m_level)
            out.push_back(w.text);
        return out;
    }

private:
    struct word {
        std::string text;
        int score;
    };
    std::vector<word> m_level;
    int m_depth = 1;
};

// Merges learned as BPE would from the candidate words, until `pieces` new pieces exist: each word is
// encoded with the merges so far (lowest rank first, leftmost on ties, as the engine and the Rust library
// do) and, while it is more than one token, its first two tokens are joined by a new merge. A new merge
// ranks after every earlier one, so it never changes how an earlier word encodes: every word that made it
// into the vocabulary is one token. A merge may produce a piece that exists already (the same string
// reached by another split); it is kept (it is what makes the word one token) but adds no piece.
struct learned_merges {
    std::vector<merge_piece> merges; // in rank order
    std::vector<std::string> pieces; // the new pieces, in creation order
};

learned_merges learn_merges(std::int64_t pieces, const std::string& space_char) {
    learned_merges out;
    std::unordered_map<std::string, int> rank; // "left right" -> rank (pieces hold no ASCII space)
    std::unordered_set<std::string> vocab;
    const auto encode = [&](const std::string& w) {
        std::vector<std::string> parts; // symbols: Ġ (2 bytes) or one letter
        for (std::size_t i = 0; i < w.size();) {
            const std::size_t n = w.compare(i, space_char.size(), space_char) == 0 ? space_char.size() : 1;
            parts.push_back(w.substr(i, n));
            i += n;
        }
        for (;;) {
            int best = -1;
            std::size_t at = 0;
            for (std::size_t i = 0; i + 1 < parts.size(); ++i)
                if (auto it = rank.find(parts[i] + " " + parts[i + 1]);
                    it != rank.end() && (best < 0 || it->second < best)) {
                    best = it->second;
                    at = i;
                }
            if (best < 0) return parts;
            parts[at] += parts[at + 1];
            parts.erase(parts.begin() + std::ptrdiff_t(at) + 1);
        }
    };
    candidate_words words(space_char);
    while (std::int64_t(out.pieces.size()) < pieces) {
        const auto level = words.next_level();
        if (level.empty()) break;
        for (const auto& w : level) {
            if (std::int64_t(out.pieces.size()) == pieces) break;
            for (auto parts = encode(w); parts.size() > 1 && std::int64_t(out.pieces.size()) < pieces;
                 parts = encode(w)) {
                rank.emplace(parts[0] + " " + parts[1], int(out.merges.size()));
                out.merges.push_back({parts[0], parts[1]});
                if (vocab.insert(parts[0] + parts[1]).second) out.pieces.push_back(parts[0] + parts[1]);
            }
        }
    }
    return out;
}

std::string json_string(std::string_view s) {
    return nlohmann::json(std::string(s)).dump();
}

std::string chat_template_for(const io::model_geometry& g) {
    if (g.model_type == "mistral") // Mistral-Instruct: [INST] USER [/INST]ASSISTANT</s>
        return "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
               "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
               "{{ message['content'] + eos_token }}{% endif %}{% endfor %}";
    // TinyLlama-Chat / Zephyr: <|system|>, <|user|>, <|assistant|> turns ending in </s>, then <|assistant|>.
    return "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\\n' + "
           "message['content'] + "
           "eos_token }}{% elif message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + "
           "eos_token }}"
           "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + eos_token "
           "}}"
           "{% endif %}{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}{% endfor "
           "%}";
}

} // namespace

int synthetic_tokenizer_max_vocab() {
    // Every candidate word ends as a piece of its own: 27 x 26^(k-1) words of level k = 2..4.
    std::int64_t total = specials + 256, level = 27;
    for (int k = 2; k <= merge_levels; ++k)
        total += (level *= 26);
    return int(total);
}

std::pair<int, int> synthetic_special_ids(const io::model_geometry& g) {
    const int vocab = g.vocab_size;
    if (vocab < specials + 256 || vocab > synthetic_tokenizer_max_vocab())
        throw usage_error(g.name, "vocab_size " + std::to_string(vocab) +
                                      " is outside what the synthetic byte-level tokenizer fills (258 to " +
                                      std::to_string(synthetic_tokenizer_max_vocab()) + ")");
    const int bos = g.bos_token_id >= 0 ? g.bos_token_id : 1;
    const int eos = g.eos_token_id >= 0 ? g.eos_token_id : 2;
    if (bos >= vocab || eos >= vocab || bos == eos)
        throw usage_error(g.name, "bos_token_id " + std::to_string(bos) + " and eos_token_id " +
                                      std::to_string(eos) + " must be distinct ids below vocab_size " +
                                      std::to_string(vocab));
    return {bos, eos};
}

synthetic_tokenizer_files make_synthetic_tokenizer(const io::model_geometry& g) {
    const auto [bos, eos] = synthetic_special_ids(g);
    const int vocab = g.vocab_size;
    const auto chars = byte_chars();
    const auto learned = learn_merges(vocab - specials - 256, chars[' ']);
    const auto& merges = learned.merges;

    // Pieces by id: the specials where the geometry puts them, everything else in order around them.
    std::vector<std::string> pieces(static_cast<std::size_t>(vocab));
    pieces[std::size_t(bos)] = bos_text;
    pieces[std::size_t(eos)] = eos_text;
    std::size_t next_id = 0;
    const auto place = [&](std::string piece) {
        while (next_id == std::size_t(bos) || next_id == std::size_t(eos))
            ++next_id;
        pieces[next_id++] = std::move(piece);
    };
    for (const auto& c : chars)
        place(c);
    for (const auto& p : learned.pieces)
        place(p);

    std::string t;
    t.reserve(std::size_t(vocab) * 32);
    const auto added = [&](int id, std::string_view text) {
        return "{\"id\":" + std::to_string(id) + ",\"content\":" + json_string(text) +
               ",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":"
               "true}";
    };
    t += "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[";
    t += bos < eos ? added(bos, bos_text) + "," + added(eos, eos_text)
                   : added(eos, eos_text) + "," + added(bos, bos_text);
    t += "],\"normalizer\":null,";
    t += "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,"
         "\"use_regex\":true},";
    const std::string bos_json = json_string(bos_text), bos_id = std::to_string(bos);
    t +=
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":" +
        bos_json +
        ",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[{\"SpecialToken\":{\"id\":" +
        bos_json +
        ",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":" + bos_json +
        ",\"type_id\":1}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],\"special_tokens\":{" + bos_json +
        ":{\"id\":" + bos_json + ",\"ids\":[" + bos_id + "],\"tokens\":[" + bos_json + "]}}},";
    t += "\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":"
         "true},";
    t += "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
         "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
         "\"vocab\":{";
    for (std::size_t id = 0; id < pieces.size(); ++id) {
        if (id) t += ',';
        t += json_string(pieces[id]);
        t += ':';
        t += std::to_string(id);
    }
    t += "},\"merges\":[";
    for (std::size_t i = 0; i < merges.size(); ++i) {
        if (i) t += ',';
        t += json_string(merges[i].left + " " + merges[i].right);
    }
    t += "]}}\n";

    synthetic_tokenizer_files out;
    out.tokenizer_json = std::move(t);
    out.bos_id = bos;
    out.eos_id = eos;

    ordered_json config;
    config["tokenizer_class"] = "PreTrainedTokenizerFast";
    config["bos_token"] = bos_text;
    config["eos_token"] = eos_text;
    config["add_bos_token"] = true;
    config["add_eos_token"] = false;
    config["model_max_length"] = g.max_position_embeddings > 0 ? g.max_position_embeddings : 2048;
    config["clean_up_tokenization_spaces"] = false;
    config["chat_template"] = chat_template_for(g);
    out.tokenizer_config_json = config.dump(2) + "\n";

    ordered_json map;
    map["bos_token"] = bos_text;
    map["eos_token"] = eos_text;
    out.special_tokens_map_json = map.dump(2) + "\n";
    return out;
}

} // namespace lorafleet::synth
