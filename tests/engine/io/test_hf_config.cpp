// hf_config: config.json parsing (defaults, type and value checks, supported families), module shapes
// for GQA models, the presets (one of which must equal the real TinyStories fixture) and
// resolve_geometry's three forms. Expected numbers are the published model configs, written out here.
#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"
#include "tests/support/expect_throw.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <fstream>

using namespace lorafleet;
using namespace lorafleet::io;

namespace {

using lorafleet::test::expect_throw;

const char* minimal_llama = R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 3,
    "num_attention_heads": 4, "intermediate_size": 160, "vocab_size": 500})";

void write_file(const std::filesystem::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

} // namespace

class TestHfConfig : public QObject {
    Q_OBJECT
private slots:
    void fixtureConfigEqualsTinystoriesPreset() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto path = test::fixtures_dir() / "models/tinystories-656k/config.json";
        const model_geometry g = read_hf_config(path);
        const model_geometry p = *geometry_preset("tinystories-656k");
        QCOMPARE(g.model_type, std::string("llama"));
        QCOMPARE(g.architecture, std::string("LlamaForCausalLM"));
        QCOMPARE(g.hidden_size, 128);
        QCOMPARE(g.num_layers, 2);
        QCOMPARE(g.num_heads, 8);
        QCOMPARE(g.num_kv_heads, 4);
        QCOMPARE(g.head_dim, 16);
        QCOMPARE(g.intermediate_size, 384);
        QCOMPARE(g.vocab_size, 2048);
        QCOMPARE(g.max_position_embeddings, 512);
        QCOMPARE(g.rms_norm_eps, 1e-6);
        QCOMPARE(g.rope_theta, 10000.0);
        QVERIFY(!g.rope_scaling);
        QVERIFY(g.tie_word_embeddings);
        QVERIFY(!g.attention_bias);
        QCOMPARE(g.bos_token_id, 1);
        QCOMPARE(g.eos_token_id, 2);
        // The preset holds the same values (only the name differs).
        QCOMPARE(p.model_type, g.model_type);
        QCOMPARE(p.architecture, g.architecture);
        QCOMPARE(p.hidden_size, g.hidden_size);
        QCOMPARE(p.num_layers, g.num_layers);
        QCOMPARE(p.num_heads, g.num_heads);
        QCOMPARE(p.num_kv_heads, g.num_kv_heads);
        QCOMPARE(p.head_dim, g.head_dim);
        QCOMPARE(p.intermediate_size, g.intermediate_size);
        QCOMPARE(p.vocab_size, g.vocab_size);
        QCOMPARE(p.max_position_embeddings, g.max_position_embeddings);
        QCOMPARE(p.rms_norm_eps, g.rms_norm_eps);
        QCOMPARE(p.rope_theta, g.rope_theta);
        QCOMPARE(p.rope_scaling, g.rope_scaling);
        QCOMPARE(p.tie_word_embeddings, g.tie_word_embeddings);
        QCOMPARE(p.attention_bias, g.attention_bias);
        QCOMPARE(p.bos_token_id, g.bos_token_id);
        QCOMPARE(p.eos_token_id, g.eos_token_id);
        QCOMPARE(p.name, std::string("tinystories-656k"));
        // A folder holding config.json works the same.
        QCOMPARE(read_hf_config(path.parent_path()).hidden_size, 128);
    }

    void presets() {
        const auto names = geometry_preset_names();
        for (const char* n : {"tinystories-656k", "tinyllama-1.1b", "mistral-7b", "llama-2-7b"})
            QVERIFY2(std::find(names.begin(), names.end(), n) != names.end(), n);
        QVERIFY(!geometry_preset("gpt2"));

        const auto t = *geometry_preset("tinyllama-1.1b");
        QCOMPARE(t.hidden_size, 2048);
        QCOMPARE(t.num_layers, 22);
        QCOMPARE(t.num_heads, 32);
        QCOMPARE(t.num_kv_heads, 4);
        QCOMPARE(t.intermediate_size, 5632);
        QCOMPARE(t.vocab_size, 32000);

        const auto m = *geometry_preset("mistral-7b");
        QCOMPARE(m.model_type, std::string("mistral"));
        QCOMPARE(m.hidden_size, 4096);
        QCOMPARE(m.num_layers, 32);
        QCOMPARE(m.num_kv_heads, 8);
        QCOMPARE(m.intermediate_size, 14336);
        QCOMPARE(m.rope_theta, 1e6);

        const auto l = *geometry_preset("llama-2-7b");
        QCOMPARE(l.num_kv_heads, 32);
        QCOMPARE(l.intermediate_size, 11008);
    }

    void gqaShapes() {
        const auto t = *geometry_preset("tinyllama-1.1b"); // head_dim 64, kv dim 4 * 64 = 256
        auto check = [&](const model_geometry& g, const char* m, std::int64_t out, std::int64_t in) {
            const auto s = g.linear_shape(m);
            QVERIFY2(s.has_value(), m);
            QCOMPARE(s->d_out, out);
            QCOMPARE(s->d_in, in);
        };
        check(t, "q_proj", 2048, 2048);
        check(t, "k_proj", 256, 2048);
        check(t, "v_proj", 256, 2048);
        check(t, "o_proj", 2048, 2048);
        check(t, "gate_proj", 5632, 2048);
        check(t, "up_proj", 5632, 2048);
        check(t, "down_proj", 2048, 5632);
        QVERIFY(!t.linear_shape("lm_head"));
        QVERIFY(!t.linear_shape("embed_tokens"));
        check(*geometry_preset("mistral-7b"), "k_proj", 1024, 4096); // method.md §9: GQA k/v dim 1024
        QCOMPARE(t.linear_modules(), (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"}));

        // An explicit head_dim that is not hidden / heads (as in some Mistral/Qwen configs).
        const auto g = parse_hf_config(R"({"model_type": "mistral", "hidden_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "intermediate_size": 96,
            "vocab_size": 10})",
                                       "cfg");
        check(g, "q_proj", 128, 64);
        check(g, "k_proj", 64, 64);
        check(g, "o_proj", 64, 128);
    }

    void defaultsAndFamilies() {
        const auto g = parse_hf_config(minimal_llama, "min");
        QCOMPARE(g.num_kv_heads, 4); // defaults to num_attention_heads
        QCOMPARE(g.head_dim, 16);
        QCOMPARE(g.architecture, std::string("LlamaForCausalLM"));
        QCOMPARE(g.name, std::string("min"));
        QVERIFY(!g.attention_bias);

        const auto q = parse_hf_config(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 96, "vocab_size": 10, "rope_scaling": {"type": "yarn"},
            "eos_token_id": [7, 8]})",
                                       "qwen");
        QCOMPARE(q.model_type, std::string("qwen2"));
        QVERIFY(q.attention_bias); // implicit for Qwen2
        QVERIFY(q.rope_scaling);
        QCOMPARE(q.eos_token_id, 7);
    }

    void unsupportedModelType() {
        const auto msg = expect_throw<unsupported_error>([] {
            parse_hf_config(R"({"model_type": "gpt2", "hidden_size": 64, "num_hidden_layers": 1,
                "num_attention_heads": 4, "intermediate_size": 96, "vocab_size": 10})",
                            "gpt2.json");
        });
        // The key and what is supported are named; the value read from the file is not echoed.
        QVERIFY2(
            msg.contains("model_type is not one this program serves (supported: llama, mistral, qwen2)") &&
                !msg.contains("'gpt2'"),
            qPrintable(msg));
        const auto arch = expect_throw<unsupported_error>([] {
            parse_hf_config(R"({"architectures": ["GPTNeoXForCausalLM"], "hidden_size": 64})", "neox.json");
        });
        QVERIFY2(arch.contains("architectures[0] is not one this program serves") &&
                     !arch.contains("GPTNeoXForCausalLM"),
                 qPrintable(arch));
    }

    void missingAndWrongKeys() {
        auto without = [](const std::string& key) {
            auto j = nlohmann::json::parse(minimal_llama);
            j.erase(key);
            return j.dump();
        };
        for (const char* key :
             {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"}) {
            const auto msg = expect_throw<format_error>([&] { parse_hf_config(without(key), "cfg.json"); });
            QVERIFY2(msg.contains(key) && msg.startsWith("cfg.json: "), qPrintable(msg));
        }
        auto with = [](const std::string& key, nlohmann::json v) {
            auto j = nlohmann::json::parse(minimal_llama);
            j[key] = std::move(v);
            return j.dump();
        };
        auto msg = expect_throw<format_error>([&] { parse_hf_config(with("hidden_size", "64"), "c"); });
        QVERIFY2(msg.contains("hidden_size"), qPrintable(msg));
        msg = expect_throw<format_error>([&] { parse_hf_config(with("vocab_size", 500.5), "c"); });
        QVERIFY2(msg.contains("vocab_size"), qPrintable(msg));
        msg = expect_throw<format_error>([&] { parse_hf_config(with("tie_word_embeddings", "yes"), "c"); });
        QVERIFY2(msg.contains("tie_word_embeddings"), qPrintable(msg));
        msg = expect_throw<validation_error>([&] { parse_hf_config(with("num_hidden_layers", 0), "c"); });
        QVERIFY2(msg.contains("num_hidden_layers"), qPrintable(msg));
        msg = expect_throw<validation_error>([&] { parse_hf_config(with("hidden_size", -64), "c"); });
        QVERIFY2(msg.contains("hidden_size"), qPrintable(msg));
        msg = expect_throw<validation_error>([&] { parse_hf_config(with("num_key_value_heads", 3), "c"); });
        QVERIFY2(msg.contains("num_key_value_heads"), qPrintable(msg));
        msg = expect_throw<validation_error>([&] { parse_hf_config(with("num_attention_heads", 5), "c"); });
        QVERIFY2(msg.contains("hidden_size"), qPrintable(msg)); // 64 % 5 and no head_dim
        msg = expect_throw<format_error>(
            [&] { parse_hf_config("{\"model_type\": \"llama\",", "broken.json"); });
        QVERIFY2(msg.contains("broken.json") && msg.contains("JSON"), qPrintable(msg));
        msg = expect_throw<format_error>([&] { parse_hf_config("[1, 2]", "array.json"); });
        QVERIFY2(msg.contains("array.json"), qPrintable(msg));
    }

    void resolveForms() {
        QCOMPARE(resolve_geometry("mistral-7b").hidden_size, 4096);
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const std::filesystem::path dir = tmp.path().toStdString();
        write_file(dir / "config.json", minimal_llama);
        QCOMPARE(resolve_geometry((dir / "config.json").string()).intermediate_size, 160);
        QCOMPARE(resolve_geometry(dir.string()).num_layers, 3);
        std::filesystem::create_directories(dir / "empty");
        for (const std::string& arg : {std::string("no-such-preset"), (dir / "empty").string()}) {
            const auto msg = expect_throw<usage_error>([&] { resolve_geometry(arg); });
            QVERIFY2(msg.contains("tinystories-656k") && msg.contains("tinyllama-1.1b"), qPrintable(msg));
        }
        const auto msg = expect_throw<io_error>([&] { read_hf_config(dir / "nope.json"); });
        QVERIFY2(msg.contains("nope.json"), qPrintable(msg));
    }
};

QTEST_APPLESS_MAIN(TestHfConfig)
#include "test_hf_config.moc"
