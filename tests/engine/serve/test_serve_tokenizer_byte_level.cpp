// serve tokenizers, byte-level BPE (GPT-2 / Llama 3 / Qwen2 style tokenizer.json): small tokenizers trained
// by HuggingFace `tokenizers` (the Rust library) and its encodings, decodings and pre-token splits, all
// written by tests/data/tokenizers/make_byte_level.py, are the independent reference: ids must be equal
// exactly, the regex matcher's pieces must equal Oniguruma's. Also: the GPT-2 byte map against its
// definition, Unicode classes and NFC against the standard, streaming decode of characters split across
// tokens (only valid UTF-8 comes out), BOS handling, and refusal of what is not implemented.
#include "engine/core/error.hpp"
#include "engine/serve/tokenizer/byte_level.hpp"
#include "engine/serve/tokenizer/decode_stream.hpp"
#include "engine/serve/tokenizer/pretokenizer_split.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "engine/serve/tokenizer/unicode_text.hpp"
#include "engine/serve/tokenizer/utf8.hpp"
#include "tests/support/expect_throw.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <set>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;

namespace {

using lorafleet::test::expect_throw;

fs::path data_dir() {
    return test::source_dir() / "tests/data/tokenizers";
}

const nlohmann::json& reference() {
    static const nlohmann::json j = [] {
        std::ifstream in(data_dir() / "byte_level_reference.json");
        return nlohmann::json::parse(in);
    }();
    return j;
}

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::unique_ptr<Tokenizer> load(const std::string& name, special_tokens special = {}) {
    return load_hf_tokenizer(data_dir() / name, std::move(special));
}

// Streams `ids` one at a time; every piece must be valid UTF-8 on its own.
std::string stream_all(const Tokenizer& tok, const std::vector<int>& ids, bool skip_special = true,
                       int* empty_pushes = nullptr) {
    decode_stream s(tok, true, skip_special);
    std::string out;
    for (int id : ids) {
        const std::string piece = s.push(id);
        if (!is_valid_utf8(piece)) qFatal("decode_stream emitted invalid UTF-8");
        if (empty_pushes && piece.empty() && !tok.is_special(id)) ++*empty_pushes;
        out += piece;
    }
    return out + s.finish();
}

QByteArray row_name(const std::string& prefix, std::size_t i, const std::string& text) {
    std::string shown = text.substr(0, 24);
    for (char& c : shown)
        if (static_cast<unsigned char>(c) < 0x20) c = '.';
    return QByteArray::fromStdString(prefix + " #" + std::to_string(i) + " " + sanitize_utf8(shown));
}

} // namespace

class TestServeTokenizerByteLevel : public QObject {
    Q_OBJECT
private slots:
    // ---- Against HuggingFace tokenizers ----
    void encodingsMatchHfTokenizers_data() {
        QTest::addColumn<int>("suite");
        QTest::addColumn<int>("index");
        const auto& suites = reference()["suites"];
        for (std::size_t s = 0; s < suites.size(); ++s)
            for (std::size_t i = 0; i < suites[s]["cases"].size(); ++i)
                QTest::newRow(row_name(suites[s]["tokenizer"].get<std::string>(), i,
                                       suites[s]["cases"][i]["text"].get<std::string>())
                                  .constData())
                    << int(s) << int(i);
    }
    void encodingsMatchHfTokenizers() {
        QFETCH(int, suite);
        QFETCH(int, index);
        const auto& s = reference()["suites"][std::size_t(suite)];
        const auto& c = s["cases"][std::size_t(index)];
        const auto tok = load(s["tokenizer"].get<std::string>());
        const std::string text = c["text"].get<std::string>();
        const auto ids = tok->encode(text, true);
        QCOMPARE(ids, c["ids"].get<std::vector<int>>());
        QCOMPARE(tok->decode(ids, true), c["decoded"].get<std::string>());
        QCOMPARE(tok->decode(ids, false), c["decoded_all"].get<std::string>());
        QCOMPARE(stream_all(*tok, ids), c["decoded"].get<std::string>());
        QCOMPARE(stream_all(*tok, ids, false), c["decoded_all"].get<std::string>());
    }

    void splitPiecesMatchOniguruma_data() {
        QTest::addColumn<int>("pattern");
        QTest::addColumn<int>("index");
        const auto& splits = reference()["splits"];
        const char* names[] = {"gpt2", "llama3", "qwen2"};
        QCOMPARE(splits.size(), std::size_t(3));
        for (std::size_t p = 0; p < splits.size(); ++p)
            for (std::size_t i = 0; i < splits[p]["cases"].size(); ++i)
                QTest::newRow(
                    row_name(names[p], i, splits[p]["cases"][i]["text"].get<std::string>()).constData())
                    << int(p) << int(i);
    }
    void splitPiecesMatchOniguruma() {
        QFETCH(int, pattern);
        QFETCH(int, index);
        const auto& p = reference()["splits"][std::size_t(pattern)];
        const auto known = recognise_split_pattern(p["pattern"].get<std::string>());
        QVERIFY(known.has_value());
        QCOMPARE(int(*known), pattern); // the reference lists gpt2, llama3, qwen2 in that order
        const auto& c = p["cases"][std::size_t(index)];
        const std::string text = c["text"].get<std::string>();
        std::vector<std::string> pieces;
        for (std::string_view v : split_pretokens(*known, text))
            pieces.emplace_back(v);
        QCOMPARE(pieces, c["pieces"].get<std::vector<std::string>>());
    }

    // ---- The parts against their definitions ----
    void byteMapIsGpt2s() {
        // GPT-2's bytes_to_unicode: printable Latin-1 kept, the 68 others numbered from U+0100 in byte order.
        QCOMPARE(byte_level_char('A'), std::string_view("A"));
        QCOMPARE(byte_level_char('~'), std::string_view("~"));
        QCOMPARE(byte_level_char(0xE9), std::string_view("\xC3\xA9")); // é kept
        QCOMPARE(byte_level_char(0x00), std::string_view("\xC4\x80")); // U+0100
        QCOMPARE(byte_level_char(' '), std::string_view("\xC4\xA0"));  // U+0120 Ġ (32 unprintables before)
        QCOMPARE(byte_level_char('\n'), std::string_view("\xC4\x8A")); // U+010A Ċ
        QCOMPARE(byte_level_char(0x7F), std::string_view("\xC4\xA1")); // U+0121
        QCOMPARE(byte_level_char(0xAD), std::string_view("\xC5\x83")); // U+0143, the 68th
        std::set<std::string_view> seen;
        std::string all;
        for (int b = 0; b < 256; ++b) {
            seen.insert(byte_level_char(static_cast<unsigned char>(b)));
            all.push_back(char(b));
        }
        QCOMPARE(seen.size(), std::size_t(256)); // a bijection
        std::string back;
        QVERIFY(byte_level_decode(byte_level_encode(all), back));
        QCOMPARE(back, all);
        back.clear();
        QVERIFY(!byte_level_decode("a b", back)); // a plain space is not a byte character
        QVERIFY(back.empty());
        // The trained vocabulary's alphabet is exactly these characters.
        const auto tok = load("byte_level_gpt2.json");
        for (int b = 0; b < 256; ++b)
            QVERIFY(tok->token_id(std::string(byte_level_char(static_cast<unsigned char>(b)))).has_value());
    }

    void unicodeClassesAndNfc() {
        QVERIFY(is_letter(U'a') && is_letter(U'\u01C5') && is_letter(U'\u4F60') &&
                is_letter(U'\u02B0')); // Lt, Lm
        QVERIFY(!is_letter(U'1') && !is_letter(U'\u0301') && !is_letter(U'_') && !is_letter(U'\U0001F600'));
        QVERIFY(is_number(U'7') && is_number(U'\u00BD') && is_number(U'\u0663') && is_number(U'\u216B'));
        QVERIFY(!is_number(U'x'));
        for (char32_t c :
             {U'\t', U'\n', U'\v', U'\f', U'\r', U' ', U'\u0085', U'\u00A0', U'\u2003', U'\u2028', U'\u3000'})
            QVERIFY(is_white_space(c));
        QVERIFY(!is_white_space(U'\u200B') && !is_white_space(U'x')); // zero width space is not White_Space
        QVERIFY(!unicode_version().empty());
        QCOMPARE(to_nfc("cafe\xCC\x81"), std::string("caf\xC3\xA9")); // e + U+0301 -> é
        QCOMPARE(to_nfc("caf\xC3\xA9"), std::string("caf\xC3\xA9"));
        QCOMPARE(to_nfc("\xE1\x84\x80\xE1\x85\xA1"), std::string("\xEA\xB0\x80")); // Hangul jamo -> 가
        QCOMPARE(to_nfc("a\xFF"), std::string("a\xEF\xBF\xBD"));
        QCOMPARE(next_code_point("\xF0\x9F\x98\x80", 0).value, U'\U0001F600');
        QCOMPARE(next_code_point("\xF0\x9F\x98", 0).value, U'\uFFFD');
    }

    // ---- Streaming, BOS, the decode contract ----
    void emojiSplitAcrossTokensStreamsValidUtf8() {
        const auto tok = load("byte_level_llama3.json");
        const std::string text = "Love \xF0\x9F\x98\x80 and \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD!";
        const auto ids = tok->encode(text, true);
        // The emoji really is cut mid-character: some single token decodes to bytes that are not UTF-8.
        int partial = 0;
        for (int id : ids) {
            const int one[1] = {id};
            partial += !is_valid_utf8(tok->decode_bytes(one, false));
        }
        QVERIFY(partial >= 2);
        int held = 0;
        QCOMPARE(stream_all(*tok, ids, true, &held), text);
        QVERIFY(held >= 2); // the first bytes of each emoji were held back
        // Prompt + generated continuation: decode(head) ++ stream(tail) == decode(all) wherever the head (a
        // prompt is whole text) ends at a character boundary.
        int boundaries = 0;
        for (std::size_t k = 1; k <= ids.size(); ++k) {
            const std::vector<int> head(ids.begin(), ids.begin() + std::ptrdiff_t(k)),
                tail(ids.begin() + std::ptrdiff_t(k), ids.end());
            const std::string head_text = tok->decode_bytes(head, true);
            if (!is_valid_utf8(head_text)) continue;
            ++boundaries;
            decode_stream s(*tok, k == 1);
            std::string out = head_text;
            for (int id : tail) {
                const std::string piece = s.push(id);
                QVERIFY(is_valid_utf8(piece));
                out += piece;
            }
            QCOMPARE(out + s.finish(), text);
        }
        QVERIFY(boundaries >= 8);
        // A stream cut inside the emoji ends in U+FFFD, never in raw bytes.
        decode_stream cut(*tok);
        std::string out;
        for (std::size_t i = 0; i < ids.size() && out.find("Love ") == std::string::npos; ++i)
            out += cut.push(ids[i]);
        out += cut.push(*tok->token_id(std::string(byte_level_char(0xF0))));
        QCOMPARE(cut.held_bytes(), std::size_t(1));
        QCOMPARE(out + cut.finish(), std::string("Love \xEF\xBF\xBD"));
    }

    void bosAndSpecialTokens() {
        const auto llama = load("byte_level_llama3.json");
        const int bos = *llama->token_id("<|begin_of_text|>"), eot = *llama->token_id("<|eot_id|>");
        QCOMPARE(llama->bos_id(), bos); // the template's first token
        QVERIFY(llama->is_special(bos) && llama->is_special(eot) &&
                !llama->is_special(*llama->token_id("a")));
        QCOMPARE(llama->encode("", true), std::vector<int>{bos});
        QCOMPARE(llama->encode("", false), std::vector<int>{});
        const auto with = llama->encode("Hi<|eot_id|>", true), without = llama->encode("Hi<|eot_id|>", false);
        QCOMPARE(with.front(), bos);
        QCOMPARE(std::vector<int>(with.begin() + 1, with.end()), without);
        QCOMPARE(without.back(), eot);
        // tokenizer_config's add_bos_token decides over the template.
        special_tokens no_bos;
        no_bos.add_bos = false;
        no_bos.bos_text = "<|begin_of_text|>";
        no_bos.eos_text = "<|eot_id|>";
        const auto plain = load("byte_level_llama3.json", no_bos);
        QCOMPARE(plain->encode("Hi", true), llama->encode("Hi", false));
        QVERIFY(plain->is_eos(eot));
        // GPT-2 and Qwen2 add nothing.
        QCOMPARE(load("byte_level_gpt2.json")->encode("", true), std::vector<int>{});
        QCOMPARE(load("byte_level_qwen2.json")->bos_id(), -1);
        // Merges written as "a b" strings (Qwen2 file) and as ["a", "b"] pairs (Llama 3 file) are the same
        // merges: both files hold the same trained vocabulary.
        QVERIFY(read_text(data_dir() / "byte_level_qwen2.json").find("\"merges\":[\"") != std::string::npos);
        QVERIFY(read_text(data_dir() / "byte_level_llama3.json").find("\"merges\":[[\"") !=
                std::string::npos);
    }

    void loadTokenizerPicksTheByteLevelJson() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        fs::copy_file(data_dir() / "byte_level_llama3.json", dir / "tokenizer.json");
        std::ofstream(dir / "tokenizer_config.json")
            << R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})";
        std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [1002, 1005]})";
        const auto tok = load_tokenizer(dir);
        QCOMPARE(tok->bos_id(), *tok->token_id("<|begin_of_text|>"));
        QCOMPARE(tok->token_id("<|end_of_text|>"), std::optional<int>(1002));
        QCOMPARE(tok->token_id("<|eot_id|>"), std::optional<int>(1005));
        QVERIFY(tok->is_eos(1002) && tok->is_eos(1005));
        QCOMPARE(tok->decode(tok->encode("Shall I compare thee?", true)),
                 std::string("Shall I compare thee?"));
    }

    // ---- What is refused ----
    void unsupportedByteLevelVariantsAreRefused() {
        const auto base = nlohmann::json::parse(read_text(data_dir() / "byte_level_llama3.json"));
        auto refuse = [&](const char* what, const std::function<void(nlohmann::json&)>& edit,
                          const char* needle) {
            auto k = base;
            edit(k);
            const auto msg = expect_throw<unsupported_error>([&] { parse_hf_tokenizer(k.dump(), what, {}); });
            QVERIFY2(msg.contains(needle), qPrintable(QString(what) + ": " + msg));
        };
        auto split = [](nlohmann::json& k) -> nlohmann::json& {
            return k["pre_tokenizer"]["pretokenizers"][0];
        };
        // GPT-4's cl100k pattern: a regex we do not recognise, so we cannot run it.
        refuse(
            "cl100k",
            [&](auto& k) {
                split(k)["pattern"]["Regex"] =
                    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)";
            },
            "Split pre-tokenizer regex");
        refuse(
            "string pattern",
            [&](auto& k) {
                split(k)["pattern"] = {{"String", " "}};
            },
            "Split pre-tokenizer pattern");
        refuse(
            "removed", [&](auto& k) { split(k)["behavior"] = "Removed"; }, "behavior 'Removed'");
        refuse(
            "inverted", [&](auto& k) { split(k)["invert"] = true; }, "inverted");
        refuse(
            "split after byte level",
            [&](auto& k) {
                auto& seq = k["pre_tokenizer"]["pretokenizers"];
                std::swap(seq[0], seq[1]);
            },
            "after ByteLevel");
        refuse(
            "metaspace and byte level",
            [&](auto& k) {
                k["pre_tokenizer"]["pretokenizers"].push_back({{"type", "Metaspace"}});
            },
            "Metaspace");
        refuse(
            "nfkc",
            [&](auto& k) {
                k["normalizer"] = {{"type", "NFKC"}};
            },
            "NFKC");
        refuse(
            "digits",
            [&](auto& k) {
                k["pre_tokenizer"]["pretokenizers"][0] = {{"type", "Digits"}};
            },
            "Digits");
    }
};

QTEST_GUILESS_MAIN(TestServeTokenizerByteLevel)
#include "test_serve_tokenizer_byte_level.moc"
