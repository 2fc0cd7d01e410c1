// Hostile inputs to the adapter importer and the model/config readers: a target_modules regex built to
// backtrack forever, huge module names, FIFOs, devices and folders in place of files, and files planted
// with a secret string that must never come back in an error message. Every check that would hang on the
// old code (std::regex backtracking, blocking open of a FIFO) runs under a watchdog that ends the process
// with a failure instead of hanging the suite.
#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/io/lora_config.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/io/safetensors.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/watchdog.hpp"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include <sys/stat.h>

using namespace lorafleet;
using namespace lorafleet::io;
namespace fs = std::filesystem;

namespace {

using lorafleet::test::watchdog; // tests/support/watchdog.hpp: a hang fails the test

constexpr const char* secret = "ZQXSECRETVALUEQXZ";

// The message of what `f` throws as E; fails the test when it throws nothing or something else.
template <class E, class F> QString message_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return QString::fromStdString(e.what());
    } catch (const std::exception& e) {
        return QString("WRONG TYPE: ") + e.what();
    }
    return "NO EXCEPTION";
}

#define EXPECT_REFUSED(E, expr, needle)                                                                      \
    do {                                                                                                     \
        const QString msg_ = message_of<E>([&] { (void)(expr); });                                           \
        QVERIFY2(msg_.contains(needle), qPrintable(msg_));                                                   \
        QVERIFY2(!msg_.contains(secret), qPrintable(msg_));                                                  \
    } while (0)

void write_file(const fs::path& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary);
    out << bytes;
}

std::string lora_json(const std::string& extra) {
    return "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16" + std::string(extra.empty() ? "" : ", ") +
           extra + "}";
}

// An adapter_config.json whose target_modules is the regex `pattern`.
std::string with_target(const std::string& pattern) {
    return lora_json("\"target_modules\": " + nlohmann::json(pattern).dump());
}

} // namespace

class TestHostileFiles : public QObject {
    Q_OBJECT
    QTemporaryDir m_tmp;
    fs::path tmp() const { return fs::path(m_tmp.path().toStdString()); }

private slots:
    // ---- regexes ----------------------------------------------------------------------------------------
    void backtrackingRegexReturnsQuickly() {
        const auto c = parse_lora_config(with_target("(.*)*(.*)*(.*)*x$"), "cfg");
        const std::string path = "model.layers.0.self_attn." + std::string(900, 'q') + "_proj";
        watchdog guard("backtracking regex", std::chrono::seconds(20));
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < 100; ++i)
            QVERIFY(!c.targets(path)); // ends in 'j', not 'x'
        QVERIFY(c.targets(path + "x"));
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        QVERIFY2(s < 5.0, qPrintable(QString::number(s))); // linear time: milliseconds
    }

    void nestedQuantifiersOnALongNameReturnQuickly() {
        const auto c = parse_lora_config(with_target("(a*)*b"), "cfg");
        watchdog guard("(a*)*b", std::chrono::seconds(20));
        QVERIFY(!c.targets(std::string(1000, 'a')));
        QVERIFY(c.targets(std::string(1000, 'a') + "b"));
    }

    void aHugeModuleNameIsRefusedWithoutACrash() {
        const auto c = parse_lora_config(with_target(".*q_proj"), "cfg");
        const std::string huge = std::string(30 * 1024, 'a') + ".q_proj";
        EXPECT_REFUSED(format_error, c.targets(huge), "longer than the 1024 allowed");
        // At the limit it still matches.
        const std::string ok = std::string(max_module_name_bytes - 7, 'a') + ".q_proj";
        QVERIFY(c.targets(ok));
        // rank_pattern keys go through the same bound.
        const auto p = parse_lora_config(lora_json("\"rank_pattern\": {\"q_proj\": 4}"), "cfg");
        EXPECT_REFUSED(format_error, p.scale_for(huge), "longer than the 1024 allowed");
        QCOMPARE(p.scale_for("model.layers.0.self_attn.q_proj").r, 4);
    }

    // A number no double holds (the libFuzzer finding "1144...4e444...763"): nlohmann throws out_of_range,
    // not parse_error; it must be a format_error that does not quote the number (the file's contents).
    void aNumberBeyondADoubleIsAFormatError() {
        const std::string huge = "1144444444444444444444444444444e444444444444444444444444763";
        for (const std::string& cfg :
             {lora_json("\"lora_dropout\": " + huge), "{\"peft_type\": \"LORA\", \"r\": " + huge + "}"}) {
            try {
                parse_lora_config(cfg, "cfg");
                QFAIL("no error");
            } catch (const format_error& e) {
                const std::string what = e.what();
                QVERIFY2(what.find("out of range") != std::string::npos, e.what());
                QVERIFY2(what.find("444444") == std::string::npos, e.what());
            }
        }
    }

    void aTooLongPatternIsRefused() {
        const std::string pattern(max_regex_bytes + 1, 'a');
        EXPECT_REFUSED(format_error, parse_lora_config(with_target(pattern), "cfg"),
                       "target_modules: the regular expression is 4097 bytes, more than the 4096 allowed");
        // Exactly at the limit is fine.
        const std::string at(max_regex_bytes, 'a');
        QVERIFY(parse_lora_config(with_target(at), "cfg").targets(std::string(max_module_name_bytes, 'a')) ==
                false);
    }

    void pythonSyntaxAndItsLimits() {
        // (?P<name>...) is Python syntax RE2 accepts.
        const auto named = parse_lora_config(with_target(".*\\.(?P<m>q_proj|v_proj)"), "cfg");
        QVERIFY(named.targets("model.layers.1.self_attn.v_proj"));
        QVERIFY(!named.targets("model.layers.1.self_attn.k_proj"));
        // Full match, like re.fullmatch: a prefix match is not enough.
        QVERIFY(!named.targets("model.layers.1.self_attn.q_proj.extra"));
        // Lookahead and backreferences are not RE2: a clear error that does not quote the pattern.
        const std::string look = std::string(".*(?!") + secret + ").*";
        EXPECT_REFUSED(format_error, parse_lora_config(with_target(look), "cfg"),
                       "target_modules: not a valid regular expression");
        EXPECT_REFUSED(format_error,
                       parse_lora_config(lora_json("\"rank_pattern\": {\"(a)\\\\1\": 4}"), "cfg"),
                       "not a valid regular expression");
    }

    // ---- not regular files ------------------------------------------------------------------------------
    void aFifoAsTheWeightsIsRefusedAtOnce() {
        const fs::path dir = tmp() / "fifo-weights";
        write_crafted_adapter(
            dir, test::crafted_llama_adapter(*geometry_preset("tinystories-656k"), {"q_proj"}, 4, 8.0, 1));
        fs::remove(dir / "adapter_model.safetensors");
        QCOMPARE(::mkfifo((dir / "adapter_model.safetensors").c_str(), 0600), 0);
        watchdog guard("FIFO as adapter_model.safetensors", std::chrono::seconds(20));
        EXPECT_REFUSED(io_error, load_peft_adapter(dir), "not a regular file (a FIFO)");
        EXPECT_REFUSED(io_error, safetensors_file::open(dir / "adapter_model.safetensors"), "a FIFO");
    }

    void aFifoAsTheConfigIsRefusedAtOnce() {
        const fs::path dir = tmp() / "fifo-config";
        write_crafted_adapter(
            dir, test::crafted_llama_adapter(*geometry_preset("tinystories-656k"), {"q_proj"}, 4, 8.0, 1));
        fs::remove(dir / "adapter_config.json");
        QCOMPARE(::mkfifo((dir / "adapter_config.json").c_str(), 0600), 0);
        watchdog guard("FIFO as adapter_config.json", std::chrono::seconds(20));
        EXPECT_REFUSED(io_error, read_lora_config(dir), "not a regular file (a FIFO)");
        EXPECT_REFUSED(io_error, load_peft_adapter(dir), "not a regular file (a FIFO)");
        const fs::path model = tmp() / "fifo-model";
        fs::create_directories(model);
        QCOMPARE(::mkfifo((model / "config.json").c_str(), 0600), 0);
        EXPECT_REFUSED(io_error, read_hf_config(model), "not a regular file (a FIFO)");
    }

    void devicesAndFoldersAreRefused() {
        watchdog guard("devices", std::chrono::seconds(20));
        EXPECT_REFUSED(io_error, safetensors_file::open("/dev/zero"),
                       "not a regular file (a character device)");
        EXPECT_REFUSED(io_error, read_text_file("/dev/zero", 1024),
                       "not a regular file (a character device)");
        EXPECT_REFUSED(io_error, read_text_file("/dev/null", 1024),
                       "not a regular file (a character device)");
        const fs::path dir = tmp() / "folder-weights";
        write_crafted_adapter(
            dir, test::crafted_llama_adapter(*geometry_preset("tinystories-656k"), {"q_proj"}, 4, 8.0, 1));
        fs::remove(dir / "adapter_model.safetensors");
        fs::create_directories(dir / "adapter_model.safetensors");
        EXPECT_REFUSED(io_error, load_peft_adapter(dir), "not a regular file (a directory)");
        // A symlink to a device is followed and refused the same way.
        const fs::path link = tmp() / "link-config";
        fs::create_directories(link);
        fs::create_symlink("/dev/zero", link / "adapter_config.json");
        EXPECT_REFUSED(io_error, read_lora_config(link), "not a regular file (a character device)");
    }

    void aTextFileOverItsLimitIsRefusedBySize() {
        const fs::path p = tmp() / "big.json";
        write_file(p, std::string(2000, ' ') + secret);
        EXPECT_REFUSED(format_error, read_text_file(p, 1000, "config"),
                       "file is 2017 bytes, more than the 1000 a config may have");
        QCOMPARE(read_text_file(p, 2017).size(), std::size_t(2017));
    }

    // ---- nothing read from a file in an error -----------------------------------------------------------
    void safetensorsErrorsDoNotEchoTheFile() {
        // A text file that is not safetensors: its first 8 bytes are not shown as a "header length".
        const fs::path p = tmp() / "secret.safetensors";
        write_file(p, std::string(secret) + " and some more text after it");
        std::uint64_t as_length = 0;
        std::memcpy(&as_length, secret, 8);
        const QString msg = message_of<format_error>([&] { safetensors_file::open(p); });
        QVERIFY2(msg.contains("header length field is larger than"), qPrintable(msg));
        QVERIFY2(!msg.contains(QString::number(as_length)), qPrintable(msg));
        QVERIFY2(!msg.contains(secret), qPrintable(msg));

        // Header JSON with the secret as a value, in bad JSON, as a dtype, as a shape.
        auto with_header = [&](const std::string& name, const std::string& header) {
            std::string bytes(8, '\0');
            const std::uint64_t n = header.size();
            std::memcpy(bytes.data(), &n, 8);
            write_file(tmp() / name, bytes + header);
            return tmp() / name;
        };
        const std::string s = secret;
        EXPECT_REFUSED(format_error, safetensors_file::open(with_header("a", "{\"t\": " + s + "}")),
                       "not valid UTF-8 JSON at byte");
        EXPECT_REFUSED(
            format_error,
            safetensors_file::open(with_header("b", "{\"t\": {\"dtype\": \"" + s +
                                                        "\", \"shape\": [1], \"data_offsets\": [0, 0]}}")),
            "dtype is not one the format defines");
        EXPECT_REFUSED(format_error,
                       safetensors_file::open(with_header("c", "{\"t\": {\"dtype\": \"F32\", \"shape\": [\"" +
                                                                   s + "\"], \"data_offsets\": [0, 4]}}")),
                       "got a string in it");
        EXPECT_REFUSED(format_error,
                       safetensors_file::open(with_header("d", "{\"__metadata__\": \"" + s + "\"}")),
                       "__metadata__ must be an object of string values, got a string");
    }

    void configErrorsDoNotEchoTheFile() {
        const std::string s = secret;
        EXPECT_REFUSED(format_error, parse_lora_config("{\"peft_type\": \"LORA\", " + s, "cfg"),
                       "not valid JSON at byte");
        EXPECT_REFUSED(unsupported_error, parse_lora_config("{\"peft_type\": \"" + s + "\"}", "cfg"),
                       "an unknown peft_type is not supported");
        EXPECT_REFUSED(unsupported_error, parse_lora_config("{\"peft_type\": \"IA3\"}", "cfg"),
                       "peft_type IA3 is not supported");
        EXPECT_REFUSED(format_error, parse_lora_config(lora_json("\"use_rslora\": \"" + s + "\""), "cfg"),
                       "use_rslora must be true or false, got a string");
        EXPECT_REFUSED(format_error,
                       parse_lora_config("{\"peft_type\": \"LORA\", \"r\": \"" + s + "\"}", "cfg"),
                       "r must be a positive integer, got a string");
        EXPECT_REFUSED(format_error,
                       parse_lora_config(lora_json("\"target_modules\": {\"x\": \"" + s + "\"}"), "cfg"),
                       "target_modules must be a list of strings, a regex string or null, got an object");
        EXPECT_REFUSED(format_error,
                       parse_lora_config(lora_json("\"rank_pattern\": {\"q\": \"" + s + "\"}"), "cfg"),
                       "rank_pattern[\"q\"] must be a positive integer, got a string");
        // hf config.json
        const std::string hf = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2, "
                               "\"num_attention_heads\": 4, \"intermediate_size\": 128, \"vocab_size\": 100";
        EXPECT_REFUSED(format_error,
                       parse_hf_config(hf + ", \"rms_norm_eps\": \"" + s + "\"}", "config.json"),
                       "rms_norm_eps must be a number, got a string");
        EXPECT_REFUSED(unsupported_error,
                       parse_hf_config("{\"model_type\": \"" + s + "\", \"hidden_size\": 64}", "config.json"),
                       "model_type is not one this program serves");
        EXPECT_REFUSED(format_error, parse_hf_config(hf + ", " + s + "}", "config.json"),
                       "not valid JSON at byte");
        // Through the file reader: the file's path is named, its content is not.
        const fs::path dir = tmp() / "secret-config";
        fs::create_directories(dir);
        write_file(dir / "adapter_config.json", "{\"peft_type\": \"" + s + "\"}");
        EXPECT_REFUSED(unsupported_error, read_lora_config(dir), "adapter_config.json");
    }
};

QTEST_GUILESS_MAIN(TestHostileFiles)
#include "test_hostile_files.moc"
