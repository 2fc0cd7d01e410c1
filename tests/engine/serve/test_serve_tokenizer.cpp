// serve tokenizers: the fixture's tokenizer.json against encodings by an independent implementation
// (HuggingFace tokenizers.js, ../shared/fixtures/reference; its caveats: not cross-checked with the Rust
// library, and the vocabulary has no <0xXX> pieces, so byte_fallback yields <unk>); decode round trips;
// streaming decode that never emits invalid UTF-8, with a hand-made byte-fallback tokenizer.json where
// a character is split across byte tokens; a SentencePiece model trained here by libsentencepiece (its
// own Decode is the reference for ours); refusal of tokenizer.json features we do not implement.
#include "engine/core/error.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/tokenizer/decode_stream.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "engine/serve/tokenizer/utf8.hpp"
#include "tests/support/expect_throw.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;

namespace {

using lorafleet::test::expect_throw;

fs::path model_dir() {
    return test::fixtures_dir() / "models/tinystories-656k";
}

nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

std::string stream_all(const Tokenizer& tok, const std::vector<int>& ids, bool at_start = true) {
    decode_stream s(tok, at_start);
    std::string out;
    for (int id : ids) {
        const std::string piece = s.push(id);
        if (!is_valid_utf8(piece)) qFatal("decode_stream emitted invalid UTF-8");
        out += piece;
    }
    return out + s.finish();
}

// A tiny Llama-style tokenizer.json (Metaspace pre-tokenizer, byte fallback with all 256 byte pieces) for
// cases the fixture's vocabulary cannot show.
std::string byte_fallback_tokenizer_json() {
    nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
    int id = 3;
    char name[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        vocab[name] = id++;
    }
    for (const char* p : {"\xE2\x96\x81", "a", "b", "c",
                          "\xE2\x96\x81"
                          "a",
                          "ab",
                          "\xE2\x96\x81"
                          "ab",
                          "é"})
        vocab[p] = id++;
    nlohmann::json j = {
        {"version", "1.0"},
        {"added_tokens",
         {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
          {{"id", 1}, {"content", "<s>"}, {"special", true}},
          {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
        {"normalizer", nullptr},
        {"pre_tokenizer",
         {{"type", "Metaspace"},
          {"replacement", "\xE2\x96\x81"},
          {"prepend_scheme", "first"},
          {"split", false}}},
        {"post_processor",
         {{"type", "TemplateProcessing"},
          {"single",
           {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
            {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
          {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
        {"decoder",
         {{"type", "Sequence"},
          {"decoders",
           {{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
            {{"type", "ByteFallback"}},
            {{"type", "Fuse"}},
            {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
        {"model",
         {{"type", "BPE"},
          {"unk_token", "<unk>"},
          {"fuse_unk", true},
          {"byte_fallback", true},
          {"vocab", vocab},
          {"merges",
           {"\xE2\x96\x81 a", "a b",
            "\xE2\x96\x81"
            "a b"}}}},
    };
    return j.dump();
}

} // namespace

class TestServeTokenizer : public QObject {
    Q_OBJECT
private slots:
    // ---- The fixture tokenizer against tokenizers.js ----
    void fixtureSpecialTokens() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto tok = load_tokenizer(model_dir());
        QCOMPARE(tok->vocab_size(), 2048);
        QCOMPARE(tok->bos_id(), 1);
        QVERIFY(tok->is_eos(2));
        QVERIFY(tok->is_special(0) && tok->is_special(1) && tok->is_special(2));
        QVERIFY(!tok->is_special(80));
        QCOMPARE(tok->token_text(80), std::string("\xE2\x96\x81"));
        QCOMPARE(tok->encode("", true), std::vector<int>{1});
        QCOMPARE(tok->encode("", false), std::vector<int>{});
    }

    void fixtureEncodingsMatchTokenizersJs_data() {
        QTest::addColumn<int>("index");
        if (!fs::exists(test::fixtures_dir() / "README.md")) return;
        const auto ref =
            read_json(test::fixtures_dir() / "reference/tinystories656k_tokenizers-js_encode.json");
        for (std::size_t i = 0; i < ref["cases"].size(); ++i)
            QTest::newRow(ref["cases"][i]["text"].get<std::string>().substr(0, 30).c_str()) << int(i);
    }
    void fixtureEncodingsMatchTokenizersJs() {
        LORAFLEET_REQUIRE_FIXTURES();
        QFETCH(int, index);
        const auto ref =
            read_json(test::fixtures_dir() / "reference/tinystories656k_tokenizers-js_encode.json");
        const auto& c = ref["cases"][std::size_t(index)];
        const auto tok = load_tokenizer(model_dir());
        const std::string text = c["text"].get<std::string>();
        const auto ids = tok->encode(text, true);
        QCOMPARE(ids, c["ids"].get<std::vector<int>>());
        std::vector<std::string> pieces;
        for (int id : ids)
            pieces.push_back(tok->token_text(id));
        QCOMPARE(pieces, c["tokens"].get<std::vector<std::string>>());
        // Decoding skips special tokens, so <unk> disappears exactly as in the reference's "decoded".
        QCOMPARE(tok->decode(ids), c["decoded"].get<std::string>());
        QCOMPARE(stream_all(*tok, ids), c["decoded"].get<std::string>());
        if (std::find(ids.begin(), ids.end(), 0) == ids.end()) QCOMPARE(tok->decode(ids), text); // round trip
    }

    void fixtureRoundTrips() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto tok = load_tokenizer(model_dir());
        for (const char* text :
             {"Tom and Sue played ball. \"Hi!\" said Tom.\n\nThe end.", "  two leading spaces",
              "trailing space ", "a", " ", "x-y:z;1,2?", "<|end_story|>"}) {
            const auto ids = tok->encode(text, true);
            QCOMPARE(tok->decode(ids, true),
                     std::string(text) == "<|end_story|>" ? std::string() : std::string(text));
            QCOMPARE(stream_all(*tok, ids), tok->decode(ids));
        }
        // An added token in the text is matched as that token (here EOS), and kept when not skipping.
        const auto ids = tok->encode("The end.<|end_story|>", false);
        QCOMPARE(ids.back(), 2);
        QCOMPARE(tok->decode(ids, false), std::string("The end.<|end_story|>"));
        // The decode contract: text of a prefix (at the text start) + the rest streamed as a continuation
        // == the whole text, wherever the split falls (generated text continuing a prompt).
        const auto all = tok->encode("Once upon a time, there was a  dog.", true);
        for (std::size_t k = 0; k <= all.size(); ++k) {
            const std::vector<int> head(all.begin(), all.begin() + std::ptrdiff_t(k)),
                tail(all.begin() + std::ptrdiff_t(k), all.end());
            const bool head_has_text =
                std::any_of(head.begin(), head.end(), [&](int id) { return !tok->is_special(id); });
            QCOMPARE(tok->decode(head) + stream_all(*tok, tail, !head_has_text), tok->decode(all));
        }
    }

    void utf8Helpers() {
        QVERIFY(is_valid_utf8("h\xC3\xA9llo \xE4\xBD\xA0\xF0\x9F\x98\x80"));
        QVERIFY(!is_valid_utf8("\xC0\xAF"));         // overlong
        QVERIFY(!is_valid_utf8("\xED\xA0\x80"));     // surrogate
        QVERIFY(!is_valid_utf8("\xF4\x90\x80\x80")); // above U+10FFFF
        QVERIFY(!is_valid_utf8("\xE4\xBD"));         // incomplete
        QCOMPARE(sanitize_utf8("a\xFF"
                               "b"),
                 std::string("a\xEF\xBF\xBD"
                             "b"));
        std::string pending = "ok\xE4\xBD";
        QCOMPARE(take_complete_utf8(pending), std::string("ok"));
        QCOMPARE(pending, std::string("\xE4\xBD"));
        pending += "\xA0";
        QCOMPARE(take_complete_utf8(pending), std::string("\xE4\xBD\xA0"));
        QVERIFY(pending.empty());
        pending = "\xE4x"; // can never complete: replaced at once
        QCOMPARE(take_complete_utf8(pending), std::string("\xEF\xBF\xBDx"));
    }

    // ---- Byte fallback and streaming ----
    void byteFallbackAndStreaming() {
        const auto tok = parse_hf_tokenizer(byte_fallback_tokenizer_json(), "test tokenizer.json", {});
        QCOMPARE(tok->bos_id(), 1); // from the template
        // "你" is not in the vocabulary: its three bytes become byte pieces (ids 3 + byte value).
        const auto ids = tok->encode("ab 你", true);
        const std::vector<int> expected = {1,
                                           *tok->token_id("\xE2\x96\x81"
                                                          "ab"),
                                           *tok->token_id("\xE2\x96\x81"),
                                           3 + 0xE4,
                                           3 + 0xBD,
                                           3 + 0xA0};
        QCOMPARE(ids, expected);
        QCOMPARE(tok->decode(ids), std::string("ab 你"));
        // Streaming: the character is held back until its third byte arrives, and nothing invalid escapes.
        decode_stream s(*tok);
        std::vector<std::string> pieces;
        for (int id : ids)
            pieces.push_back(s.push(id));
        QCOMPARE(pieces, (std::vector<std::string>{"", "ab", " ", "", "", "你"}));
        QCOMPARE(s.finish(), std::string());
        // A sequence cut short: the held bytes come out as U+FFFD at the end, never raw.
        decode_stream cut(*tok);
        QCOMPARE(cut.push(3 + 0xE4), std::string());
        QCOMPARE(cut.push(3 + 0xBD), std::string());
        QCOMPARE(cut.held_bytes(), std::size_t(2));
        QCOMPARE(cut.finish(), std::string("\xEF\xBF\xBD\xEF\xBF\xBD"));
        // A byte that cannot continue the held one: the held byte is replaced, the rest goes on.
        decode_stream bad(*tok);
        QCOMPARE(bad.push(3 + 0xE4), std::string());
        QCOMPARE(bad.push(*tok->token_id("a")), std::string("\xEF\xBF\xBD"
                                                            "a"));
        QCOMPARE(tok->decode(std::vector<int>{3 + 0xE4, *tok->token_id("a")}), std::string("\xEF\xBF\xBD"
                                                                                           "a"));
        // A character that is in the vocabulary stays one token.
        QCOMPARE(tok->encode("é", false),
                 (std::vector<int>{*tok->token_id("\xE2\x96\x81"), *tok->token_id("é")}));
    }

    void unsupportedTokenizerJsonIsRefused() {
        auto j = nlohmann::json::parse(byte_fallback_tokenizer_json());
        auto refuse = [&](const char* what, const std::function<void(nlohmann::json&)>& edit,
                          const char* needle) {
            auto k = j;
            edit(k);
            const auto msg = expect_throw<unsupported_error>([&] { parse_hf_tokenizer(k.dump(), what, {}); });
            QVERIFY2(msg.contains(needle), qPrintable(QString(what) + ": " + msg));
        };
        refuse(
            "bert-pre",
            [](auto& k) {
                k["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
            },
            "BertPreTokenizer");
        refuse(
            "nfkc",
            [](auto& k) {
                k["normalizer"] = {{"type", "NFKC"}};
            },
            "NFKC");
        refuse(
            "unigram", [](auto& k) { k["model"]["type"] = "Unigram"; }, "Unigram");
        refuse(
            "regex",
            [](auto& k) {
                k["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", " +"}}}, {"content", " "}};
            },
            "string patterns");
        refuse(
            "bert",
            [](auto& k) {
                k["post_processor"] = {{"type", "BertProcessing"}};
            },
            "BertProcessing");
        QVERIFY(
            expect_throw<format_error>([&] { parse_hf_tokenizer("{not json", "x", {}); }).contains("JSON"));
    }

    // ---- SentencePiece through libsentencepiece ----
    void sentencePieceModel() {
        QTemporaryDir tmp;
        const fs::path dir = tmp.path().toStdString();
        // A small corpus with a few CJK characters that fall outside the character coverage, so they must
        // be encoded as byte pieces.
        std::string corpus;
        for (int i = 0; i < 200; ++i)
            corpus += "the quick brown fox jumps over the lazy dog " + std::to_string(i % 17) +
                      (i % 50 == 0 ? " 你好 " : " ") + "once upon a time there was a little girl\n";
        write_text(dir / "corpus.txt", corpus);
        const auto status = sentencepiece::SentencePieceTrainer::Train(
            "--input=" + (dir / "corpus.txt").string() + " --model_prefix=" + (dir / "tokenizer").string() +
            " --vocab_size=300 --model_type=bpe --byte_fallback=true --character_coverage=0.99 "
            "--minloglevel=2");
        QVERIFY2(status.ok(), status.ToString().c_str());
        write_text(dir / "tokenizer_config.json", R"({"add_bos_token": true, "add_eos_token": false})");

        const auto tok = load_tokenizer(dir);
        sentencepiece::SentencePieceProcessor sp;
        QVERIFY(sp.Load((dir / "tokenizer.model").string()).ok());
        QCOMPARE(tok->vocab_size(), sp.GetPieceSize());
        QCOMPARE(tok->bos_id(), sp.bos_id());
        QVERIFY(tok->is_eos(sp.eos_id()));
        for (const std::string text :
             {"the quick brown fox", "  spaced  out ", "你好 little dog", "once 猫 upon", ""}) {
            const auto ids = tok->encode(text, true);
            QCOMPARE(ids.front(), sp.bos_id());
            const std::vector<int> body(ids.begin() + 1, ids.end());
            QCOMPARE(body, sp.EncodeAsIds(text));
            // Our piece-by-piece decoder against the library's own Decode.
            QCOMPARE(tok->decode(ids, false), sp.DecodeIds(body));
            QCOMPARE(stream_all(*tok, ids), tok->decode(ids));
        }
        // 猫 is not in the vocabulary: byte pieces, split across tokens, streamed without invalid UTF-8.
        const auto ids = tok->encode("猫", false);
        QVERIFY(ids.size() >= 3);
        decode_stream s(*tok);
        std::string out;
        int empty_pushes = 0;
        for (int id : ids) {
            const auto piece = s.push(id);
            empty_pushes += piece.empty();
            out += piece;
        }
        QVERIFY(empty_pushes >= 2); // the first bytes of the character were held back
        QCOMPARE(out + s.finish(), std::string("猫"));
    }

    void folderWithoutTokenizerIsAnError() {
        QTemporaryDir tmp;
        QVERIFY(
            expect_throw<io_error>([&] { load_tokenizer(tmp.path().toStdString()); }).contains("tokenizer"));
    }

    // ---- Stop strings (text-level, used by generate) ----
    void stopMatcherHoldsBackPrefixes() {
        stop_matcher m({"The end", "\n\n"});
        QCOMPARE(m.feed("Once upon a time. Th"),
                 std::string("Once upon a time. ")); // "Th" may start "The end"
        QCOMPARE(m.feed("e dog"), std::string("The dog"));
        QCOMPARE(m.feed(" ran.\n"), std::string(" ran."));
        QCOMPARE(m.feed("\nmore"), std::string()); // "\n\n" completes: stop before it
        QVERIFY(m.stopped());
        QCOMPARE(m.feed("ignored"), std::string());
        stop_matcher n({"xyz"});
        QCOMPARE(n.feed("abx"), std::string("ab"));
        QCOMPARE(n.flush(), std::string("x"));
    }
};

QTEST_GUILESS_MAIN(TestServeTokenizer)
#include "test_serve_tokenizer.moc"
