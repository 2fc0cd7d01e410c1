// PEFT adapter loading: the real TinyLlama fixture (numbers derived here from TinyLlama's published
// dims), the scale rules (alpha/r, rsLoRA, rank_pattern / alpha_pattern in key order, target_modules
// regex), the representability policy (refused vs. ignored with a warning), every structural failure
// with its exception type and message, and adapter discovery on disk.
#include "engine/core/error.hpp"
#include "engine/io/adapter_discovery.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/io/lora_config.hpp"
#include "engine/io/peft_adapter.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>
#include <fstream>
#include <limits>
#include <typeinfo>

using namespace lorafleet;
using namespace lorafleet::io;
using lorafleet::test::crafted_adapter;
using lorafleet::test::crafted_llama_adapter;
using lorafleet::test::crafted_module;
using lorafleet::test::write_crafted_adapter;

namespace fs = std::filesystem;

namespace {

const fs::path real_adapter_rel = "adapters/tinyllama-1.1b-chat-arona-ckpt75";

// Runs f; returns the message when it throws exactly E (not a subclass unless allow_derived), else a
// description of what happened instead, so QVERIFY2 shows it.
template <class E, bool allow_derived = true, class F> QString expect_throw(F&& f) {
    try {
        f();
    } catch (const E& e) {
        if (!allow_derived && typeid(e) != typeid(E))
            return QStringLiteral("WRONG EXCEPTION TYPE (subclass): ") + e.what();
        return QString::fromStdString(e.what());
    } catch (const std::exception& e) {
        return QStringLiteral("WRONG EXCEPTION TYPE: ") + e.what();
    }
    return QStringLiteral("NO EXCEPTION");
}

#define EXPECT_MESSAGE(msg, needle)                                                                          \
    QVERIFY2(!(msg).startsWith("WRONG") && !(msg).startsWith("NO EXC") && (msg).contains(needle),            \
             qPrintable(msg))

model_geometry tiny() {
    return *geometry_preset("tinystories-656k");
} // hidden 128, kv dim 64, inter 384

crafted_adapter tiny_spec(int r = 8, double alpha = 16) {
    return crafted_llama_adapter(tiny(), {"q_proj", "v_proj"}, r, alpha);
}

bool contains_warning(const peft_adapter& a, const QString& needle) {
    for (const auto& w : a.warnings)
        if (QString::fromStdString(w).contains(needle)) return true;
    return false;
}

} // namespace

class TestPeftAdapter : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    int m_counter = 0;
    fs::path fresh(const std::string& name = "adapter") {
        return fs::path(m_tmp.path().toStdString()) / (std::to_string(++m_counter) + "-" + name);
    }
    fs::path write(const crafted_adapter& spec, const std::string& name = "adapter") {
        const fs::path dir = fresh(name);
        write_crafted_adapter(dir, spec);
        return dir;
    }

private slots:
    void initTestCase() { QVERIFY(m_tmp.isValid()); }

    // ---- the real adapter ----
    void realAdapterSummary() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto a = load_peft_adapter(test::fixtures_dir() / real_adapter_rel);
        QCOMPARE(a.name, std::string("tinyllama-1.1b-chat-arona-ckpt75"));
        QCOMPARE(a.max_rank(), 4);
        QCOMPARE(a.config.lora_alpha, 16.0);
        QVERIFY(!a.config.use_rslora);
        QCOMPARE(a.module_names(), (std::vector<std::string>{"q_proj", "v_proj"}));
        QCOMPARE(a.layer_count(), 22);
        QCOMPARE(int(a.modules.size()), 44);
        // TinyLlama: hidden 2048, q out 2048, v out 4 kv heads * 64 = 256; r = 4.
        const std::int64_t hidden = 2048, kv_dim = 256, r = 4;
        const std::int64_t per_layer = (r * hidden + hidden * r) + (r * hidden + kv_dim * r);
        QCOMPARE(a.parameter_count(), 22 * per_layer);
        QCOMPARE(a.weight_bytes(), std::uint64_t(22 * per_layer * 4));
        QVERIFY(a.weight_dtype() == dtype::F32);
        QCOMPARE(a.config.base_model_name_or_path, std::string("TinyLlama/TinyLlama-1.1B-Chat-v1.0"));
        QVERIFY2(a.warnings.empty(), a.warnings.empty() ? "" : a.warnings.front().c_str());
        for (const auto& m : a.modules) {
            QCOMPARE(m.scale, 4.0); // 16 / 4
            QCOMPARE(m.rank, 4);
            QCOMPARE(m.d_in, hidden);
            QCOMPARE(m.d_out, m.short_name == "q_proj" ? hidden : kv_dim);
        }
        // Sorted by layer, then q before v.
        QCOMPARE(a.modules[0].path, std::string("model.layers.0.self_attn.q_proj"));
        QCOMPARE(a.modules[1].path, std::string("model.layers.0.self_attn.v_proj"));
        QCOMPARE(a.modules[2].path, std::string("model.layers.1.self_attn.q_proj"));
        QCOMPARE(a.modules[43].path, std::string("model.layers.21.self_attn.v_proj"));
        QCOMPARE(a.modules[43].layer, 21);
        QCOMPARE(a.modules[0].a.name(),
                 std::string("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));

        // The fp32 factors: A unchanged, B multiplied by the scale.
        const auto& v = a.modules[1];
        const auto f = v.factors_f32();
        QCOMPARE(f.rank, 4);
        QCOMPARE(f.a.size(), std::size_t(4 * hidden));
        QCOMPARE(f.b.size(), std::size_t(kv_dim * 4));
        const auto raw_a = v.a.to_f32();
        const auto raw_b = v.b.to_f32();
        QCOMPARE(f.a, raw_a);
        double b_norm = 0;
        for (std::size_t i = 0; i < raw_b.size(); ++i) {
            QCOMPARE(f.b[i], float(double(raw_b[i]) * 4.0));
            b_norm += double(raw_b[i]) * raw_b[i];
        }
        QVERIFY(b_norm > 0); // a trained checkpoint, not the zero init
    }

    void realAdapterAgainstBases() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto tinyllama = *geometry_preset("tinyllama-1.1b");
        const auto a = load_peft_adapter(test::fixtures_dir() / real_adapter_rel, {&tinyllama, true});
        QCOMPARE(a.layer_count(), 22);
        const auto stories = tiny();
        const auto msg = expect_throw<shape_mismatch>([&] {
            load_peft_adapter(test::fixtures_dir() / real_adapter_rel, {&stories, true});
        });
        EXPECT_MESSAGE(msg, "tinystories-656k");
        EXPECT_MESSAGE(msg, "expected lora_A [4, 128]");
        EXPECT_MESSAGE(msg, "found lora_A [4, 2048]");
        // A base with fewer layers rejects the deeper layers.
        auto shallow = tinyllama;
        shallow.num_layers = 10;
        const auto deep = expect_throw<shape_mismatch>([&] {
            load_peft_adapter(test::fixtures_dir() / real_adapter_rel, {&shallow, true});
        });
        EXPECT_MESSAGE(deep, "layer 10");
    }

    void truncatedSafetensorsIsFormatError() {
        LORAFLEET_REQUIRE_FIXTURES();
        const fs::path dir = fresh("truncated");
        fs::create_directories(dir);
        const fs::path src = test::fixtures_dir() / real_adapter_rel;
        fs::copy_file(src / "adapter_config.json", dir / "adapter_config.json");
        fs::copy_file(src / "adapter_model.safetensors", dir / "adapter_model.safetensors");
        fs::permissions(dir / "adapter_model.safetensors", fs::perms::owner_write, fs::perm_options::add);
        fs::resize_file(dir / "adapter_model.safetensors", 100000);
        const auto msg = expect_throw<format_error>([&] { load_peft_adapter(dir); });
        EXPECT_MESSAGE(msg, "adapter_model.safetensors");
    }

    // ---- scale rules ----
    void scaleAlphaOverR() {
        const auto a = load_peft_adapter(write(tiny_spec(8, 16)));
        QCOMPARE(int(a.modules.size()), 4); // 2 layers x {q, v}
        for (const auto& m : a.modules)
            QCOMPARE(m.scale, 2.0);
        QCOMPARE(a.module_names(), (std::vector<std::string>{"q_proj", "v_proj"}));
        QCOMPARE(a.modules[1].d_out, std::int64_t(64)); // tinystories v: 4 kv heads * 16
        QVERIFY(a.warnings.empty());
    }

    void scaleRsLora() {
        auto spec = tiny_spec(4, 16);
        spec.config["use_rslora"] = true;
        const auto a = load_peft_adapter(write(spec));
        for (const auto& m : a.modules)
            QCOMPARE(m.scale, 8.0); // 16 / sqrt(4)
        spec = tiny_spec(8, 16);
        spec.config["use_rslora"] = true;
        const auto b = load_peft_adapter(write(spec));
        for (const auto& m : b.modules)
            QCOMPARE(m.scale, 16.0 / std::sqrt(8.0));
    }

    void defaultAlphaIsEight() {
        auto spec = tiny_spec(4, 0);
        spec.config.erase("lora_alpha");
        const auto a = load_peft_adapter(write(spec));
        QCOMPARE(a.config.lora_alpha, 8.0);
        for (const auto& m : a.modules)
            QCOMPARE(m.scale, 2.0);
    }

    void rankAndAlphaPatterns() {
        // r = 8, alpha = 16; layer 1's q_proj via a regex key gets r = 4, every v_proj via a plain key
        // gets r = 2; every q_proj gets alpha 32.
        auto spec = tiny_spec(8, 16);
        spec.config["rank_pattern"] =
            nlohmann::ordered_json{{"layers\\.1\\.self_attn\\.q_proj", 4}, {"v_proj", 2}};
        spec.config["alpha_pattern"] = nlohmann::ordered_json{{"q_proj", 32}};
        for (auto& m : spec.modules) {
            if (m.path == "model.layers.1.self_attn.q_proj") m.rank = 4;
            if (m.path.ends_with("v_proj")) m.rank = 2;
        }
        const auto a = load_peft_adapter(write(spec));
        auto scale = [&](const char* path) {
            const auto* m = a.find(path);
            return m ? m->scale : -1.0;
        };
        QCOMPARE(scale("model.layers.0.self_attn.q_proj"), 32.0 / 8);
        QCOMPARE(scale("model.layers.1.self_attn.q_proj"), 32.0 / 4);
        QCOMPARE(scale("model.layers.0.self_attn.v_proj"), 16.0 / 2);
        QCOMPARE(scale("model.layers.1.self_attn.v_proj"), 16.0 / 2);
        QCOMPARE(a.find("model.layers.1.self_attn.q_proj")->rank, 4);
        QCOMPARE(a.max_rank(), 8);
    }

    void patternKeyOrderAndAnchoring() {
        const auto c = parse_lora_config(R"({"peft_type": "LORA", "r": 8, "lora_alpha": 8,
            "rank_pattern": {"q_proj": 4, "layers\\.0\\.self_attn\\.q_proj": 2, "proj": 3},
            "alpha_pattern": {"layers\\.0\\..*": 1, "o_proj": 2}})",
                                         "cfg");
        // First matching key in file order wins (not the most specific one).
        QCOMPARE(c.scale_for("model.layers.0.self_attn.q_proj").r, 4);
        // A key matches whole components only: "proj" does not match "k_proj".
        QCOMPARE(c.scale_for("model.layers.0.self_attn.k_proj").r, 8);
        QCOMPARE(c.scale_for("model.layers.0.self_attn.k_proj").alpha, 1.0);
        QCOMPARE(c.scale_for("model.layers.3.self_attn.o_proj").alpha, 2.0);
        QCOMPARE(c.scale_for("model.layers.3.self_attn.o_proj").scale, 2.0 / 8);
        // "layers\.0\..*" must not catch layer 10.
        QCOMPARE(c.scale_for("model.layers.10.self_attn.k_proj").alpha, 8.0);
    }

    void targetModulesRules() {
        auto c =
            parse_lora_config(R"({"peft_type": "LORA", "target_modules": ["q_proj", "mlp.down_proj"]})", "c");
        QVERIFY(c.targets("model.layers.0.self_attn.q_proj"));
        QVERIFY(c.targets("model.layers.5.mlp.down_proj"));
        QVERIFY(!c.targets("model.layers.0.self_attn.k_proj"));
        QVERIFY(!c.targets("model.layers.0.self_attn.xq_proj")); // suffix must start at a component
        c = parse_lora_config(
            R"({"peft_type": "LORA", "target_modules": ".*layers\\.[01]\\.self_attn\\.(q|v)_proj"})", "c");
        QVERIFY(c.targets("model.layers.1.self_attn.v_proj"));
        QVERIFY(!c.targets("model.layers.2.self_attn.v_proj"));
        QVERIFY(!c.targets("model.layers.1.self_attn.v_proj.extra")); // full match, not search
        c = parse_lora_config(
            R"({"peft_type": "LORA", "target_modules": ["q_proj"], "layers_to_transform": 1})", "c");
        QVERIFY(c.targets("model.layers.1.self_attn.q_proj"));
        QVERIFY(!c.targets("model.layers.0.self_attn.q_proj"));
        c = parse_lora_config(R"({"peft_type": "LORA", "target_modules": null})", "c");
        QVERIFY(c.targets("model.layers.1.self_attn.q_proj"));
        QCOMPARE(module_layer_index("model.layers.17.mlp.up_proj"), 17);
        QCOMPARE(module_layer_index("lm_head"), -1);
    }

    void targetModulesRegexInAdapter() {
        // The config's regex selects q_proj only; the file also holds v_proj: loaded, with a warning.
        auto spec = tiny_spec(8, 16);
        spec.config["target_modules"] = "model\\.layers\\.\\d+\\.self_attn\\.q_proj";
        const auto a = load_peft_adapter(write(spec));
        QCOMPARE(int(a.modules.size()), 4);
        QVERIFY(contains_warning(a, "target_modules"));
        QVERIFY(contains_warning(a, "model.layers.0.self_attn.v_proj"));
        QVERIFY(!contains_warning(a, "q_proj"));
        spec.config["target_modules"] = "model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj";
        QVERIFY(load_peft_adapter(write(spec)).warnings.empty());
    }

    void adapterNameSegmentAndOrder() {
        // Written in scrambled order with ".lora_A.default.weight" names; mlp modules included.
        auto spec = crafted_llama_adapter(tiny(), {"down_proj", "q_proj", "gate_proj", "k_proj"}, 4, 4);
        std::reverse(spec.modules.begin(), spec.modules.end());
        for (auto& m : spec.modules)
            m.adapter_name = "default";
        const auto a = load_peft_adapter(write(spec));
        std::vector<std::string> paths;
        for (const auto& m : a.modules)
            paths.push_back(m.path);
        QCOMPARE(paths, (std::vector<std::string>{
                            "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                            "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.down_proj",
                            "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj",
                            "model.layers.1.mlp.gate_proj", "model.layers.1.mlp.down_proj"}));
        QCOMPARE(a.module_names(), (std::vector<std::string>{"q_proj", "k_proj", "gate_proj", "down_proj"}));
        const auto* down = a.find("model.layers.1.mlp.down_proj");
        QVERIFY(down);
        QCOMPARE(down->d_in, std::int64_t(384));
        QCOMPARE(down->d_out, std::int64_t(128));
        const auto base = tiny();
        QCOMPARE(int(load_peft_adapter(a.dir, {&base, true}).modules.size()), 8);
    }

    void factorsAreScaledAndConverted() {
        // One explicit module: A = [[1, 2, 3], [4, 5, 6]] ([2, 3]), B = [[1, 0], [0, -1]] ([2, 2]), BF16.
        crafted_adapter spec;
        spec.config = test::lora_config_json(2, 6, {"q_proj"});
        crafted_module m;
        m.path = "model.layers.0.self_attn.q_proj";
        m.d_in = 3;
        m.d_out = 2;
        m.rank = 2;
        m.type = dtype::BF16;
        m.a_values = {1, 2, 3, 4, 5, 6};
        m.b_values = {1, 0, 0, -1};
        spec.modules.push_back(m);
        const auto a = load_peft_adapter(write(spec));
        QVERIFY(a.weight_dtype() == dtype::BF16);
        QCOMPARE(a.weight_bytes(), std::uint64_t((6 + 4) * 2));
        const auto f = a.factors_f32(0);
        QCOMPARE(f.a, (std::vector<float>{1, 2, 3, 4, 5, 6}));
        QCOMPARE(f.b, (std::vector<float>{3, 0, 0, -3})); // scale 6 / 2
        QCOMPARE(f.d_in, std::int64_t(3));
        QCOMPARE(f.d_out, std::int64_t(2));
    }

    // ---- refused ----
    void doraIsUnsupported() {
        auto spec = tiny_spec();
        spec.config["use_dora"] = true;
        auto msg = expect_throw<unsupported_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "DoRA");
        EXPECT_MESSAGE(msg, "adapter_config.json");
        // A magnitude vector in the file is DoRA even if the config does not say so.
        spec = tiny_spec();
        spec.extra_tensors.push_back(
            {"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
             dtype::F32,
             {128},
             {}});
        msg = expect_throw<unsupported_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "lora_magnitude_vector");
    }

    void loraBiasIsUnsupported() {
        auto spec = tiny_spec();
        spec.extra_tensors.push_back(
            {"base_model.model.model.layers.0.self_attn.q_proj.lora_B.bias", dtype::F32, {128}, {}});
        auto msg = expect_throw<unsupported_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "lora_B.bias");
        spec = tiny_spec();
        spec.config["lora_bias"] = true;
        msg = expect_throw<unsupported_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "lora_bias");
    }

    void pickleOnlyIsUnsupported() {
        auto spec = tiny_spec();
        spec.write_weights = false;
        spec.write_bin = true;
        const auto msg = expect_throw<unsupported_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "pickle checkpoints are not loaded");
        EXPECT_MESSAGE(msg, "adapter_model.bin");
    }

    void missingFiles() {
        auto spec = tiny_spec();
        spec.write_config = false;
        auto msg = expect_throw<format_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "adapter_config.json is missing");
        spec = tiny_spec();
        spec.write_weights = false;
        msg = expect_throw<format_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "adapter_model.safetensors is missing");
        msg = expect_throw<io_error>([&] { load_peft_adapter(fresh("never-written")); });
        EXPECT_MESSAGE(msg, "never-written");
    }

    void missingLoraB() {
        auto spec = tiny_spec();
        spec.modules[2].with_b = false; // layer 1 q_proj
        const auto msg = expect_throw<format_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "model.layers.1.self_attn.q_proj has lora_A but no lora_B");
    }

    void rankMismatchBetweenAAndB() {
        auto spec = tiny_spec(8, 16);
        spec.modules[0].rank_b = 4;
        const auto msg = expect_throw<shape_mismatch>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "model.layers.0.self_attn.q_proj");
        EXPECT_MESSAGE(msg, "ranks differ");
    }

    void rankDiffersFromConfig() {
        auto spec = tiny_spec(8, 16);
        spec.modules[1].rank = 4; // A [4, 128] and B [64, 4] agree with each other, not with r = 8
        const auto msg = expect_throw<validation_error, false>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "model.layers.0.self_attn.v_proj has rank 4");
        EXPECT_MESSAGE(msg, "r = 8");
    }

    void nonFiniteWeights() {
        auto spec = tiny_spec();
        for (auto& m : spec.modules)
            m.type = dtype::BF16;
        spec.modules[3].poison_a = std::numeric_limits<float>::quiet_NaN();
        const fs::path bf16_dir = write(spec);
        auto msg = expect_throw<validation_error, false>([&] { load_peft_adapter(bf16_dir); });
        EXPECT_MESSAGE(msg, "model.layers.1.self_attn.v_proj.lora_A.weight");
        EXPECT_MESSAGE(msg, "NaN");
        // check_finite = false loads it (the caller takes responsibility).
        QCOMPARE(int(load_peft_adapter(bf16_dir, {nullptr, false}).modules.size()), 4);

        spec = tiny_spec();
        spec.modules[0].poison_b = std::numeric_limits<float>::quiet_NaN();
        msg = expect_throw<validation_error, false>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "model.layers.0.self_attn.q_proj.lora_B.weight");
        spec = tiny_spec();
        spec.modules[2].poison_a = -std::numeric_limits<float>::infinity();
        msg = expect_throw<validation_error, false>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "model.layers.1.self_attn.q_proj.lora_A.weight");
    }

    void unsupportedDtypes() {
        auto spec = tiny_spec();
        for (auto& m : spec.modules)
            m.type = dtype::I32;
        auto msg = expect_throw<unsupported_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "I32");
        spec = tiny_spec();
        spec.modules[0].type_b = dtype::BF16; // A F32, B BF16
        msg = expect_throw<validation_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "share a dtype");
    }

    void notTwoDimensional() {
        auto spec = tiny_spec();
        spec.modules[0].with_a = false;
        spec.extra_tensors.push_back(
            {test::lora_tensor_name(spec.modules[0].path, 'A'), dtype::F32, {8, 128, 1}, {}});
        const auto msg = expect_throw<shape_mismatch>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "2-D");
    }

    void badConfigs() {
        auto spec = tiny_spec();
        spec.config["peft_type"] = "IA3";
        auto msg = expect_throw<unsupported_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "IA3");

        spec = tiny_spec();
        spec.config_text = R"({"peft_type": "LORA", "r": 8,)";
        msg = expect_throw<format_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "adapter_config.json: not valid JSON");

        const std::vector<std::pair<const char*, nlohmann::ordered_json>> wrong{
            {"r", "8"},
            {"lora_alpha", "16"},
            {"use_rslora", 1},
            {"target_modules", 5},
            {"rank_pattern", nlohmann::ordered_json::array()},
            {"alpha_pattern", nlohmann::ordered_json{{"q_proj", "x"}}},
            {"modules_to_save", "lm_head"},
            {"fan_in_fan_out", "no"},
            {"base_model_name_or_path", 3}};
        for (const auto& [key, value] : wrong) {
            spec = tiny_spec();
            spec.config[key] = value;
            msg = expect_throw<format_error>([&] { load_peft_adapter(write(spec)); });
            EXPECT_MESSAGE(msg, key);
            EXPECT_MESSAGE(msg, "adapter_config.json");
        }
        spec = tiny_spec();
        spec.config["r"] = 0;
        msg = expect_throw<validation_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "r must be a positive integer");
        spec = tiny_spec();
        spec.config["target_modules"] = "model\\.(q_proj";
        msg = expect_throw<format_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "not a valid regular expression");
        spec = tiny_spec();
        spec.config.erase("peft_type");
        msg = expect_throw<format_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "peft_type");
    }

    void bindsToNothing() {
        crafted_adapter spec;
        spec.config = test::lora_config_json(8, 16, {"embed_tokens"});
        spec.extra_tensors.push_back(
            {"base_model.model.model.embed_tokens.lora_embedding_A", dtype::F32, {8, 2048}, {}});
        spec.extra_tensors.push_back(
            {"base_model.model.model.embed_tokens.lora_embedding_B", dtype::F32, {128, 8}, {}});
        const auto msg = expect_throw<validation_error, false>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, "adapter binds to no linear module");
    }

    // ---- ignored with a warning ----
    void embeddingLoraIsIgnoredWithWarning() {
        auto spec = tiny_spec();
        spec.config["target_modules"] = nlohmann::ordered_json::array({"q_proj", "v_proj", "embed_tokens"});
        spec.extra_tensors.push_back(
            {"base_model.model.model.embed_tokens.lora_embedding_A", dtype::F32, {8, 2048}, {}});
        spec.extra_tensors.push_back(
            {"base_model.model.model.embed_tokens.lora_embedding_B", dtype::F32, {128, 8}, {}});
        const auto a = load_peft_adapter(write(spec));
        QCOMPARE(int(a.modules.size()), 4);
        QCOMPARE(a.module_names(), (std::vector<std::string>{"q_proj", "v_proj"}));
        QCOMPARE(int(a.warnings.size()), 1);
        QVERIFY(contains_warning(a, "embedding LoRA on model.embed_tokens"));
        QVERIFY(contains_warning(a, "ignored"));
    }

    void modulesToSaveAndUnknownTensors() {
        auto spec = tiny_spec();
        spec.config["modules_to_save"] = nlohmann::ordered_json::array({"lm_head"});
        spec.extra_tensors.push_back({"base_model.model.lm_head.weight", dtype::F32, {2048, 128}, {}});
        spec.extra_tensors.push_back({"base_model.model.model.norm.something", dtype::F32, {4}, {}});
        const auto a = load_peft_adapter(write(spec));
        QCOMPARE(int(a.modules.size()), 4);
        QVERIFY(contains_warning(a, "modules_to_save"));
        QVERIFY(contains_warning(a, "base_model.model.lm_head.weight"));
        QVERIFY(contains_warning(a, "unrecognized tensors: base_model.model.model.norm.something"));
        QCOMPARE(a.parameter_count(), std::int64_t(2 * (8 * 128 + 128 * 8) + 2 * (8 * 128 + 64 * 8)));
    }

    void baseGeometryRejections() {
        const auto base = tiny();
        auto spec = tiny_spec();
        crafted_module head;
        head.path = "lm_head";
        head.d_in = 128;
        head.d_out = 2048;
        head.rank = 8;
        spec.modules.push_back(head);
        const fs::path dir = write(spec);
        // Without a base, lm_head cannot be placed in a decoder layer either: refused.
        EXPECT_MESSAGE(expect_throw<validation_error>([&] { load_peft_adapter(dir); }),
                       "module lm_head: no \"layers.N\" component");
        const auto msg = expect_throw<shape_mismatch>([&] { load_peft_adapter(dir, {&base, true}); });
        EXPECT_MESSAGE(msg, "'lm_head' is not a decoder linear");

        spec = crafted_llama_adapter(*geometry_preset("tinyllama-1.1b"), {"q_proj"}, 2, 2, 3); // 3 layers
        spec.modules.erase(spec.modules.begin(), spec.modules.begin() + 2);                    // keep layer 2
        spec.modules[0].d_in = spec.modules[0].d_out = 128;
        const auto deep = expect_throw<shape_mismatch>([&] {
            load_peft_adapter(write(spec), {&base, true});
        });
        EXPECT_MESSAGE(deep, "layer 2");
    }

    // ---- discovery ----
    void discovery() {
        const fs::path root = fresh("fleet");
        write_crafted_adapter(root / "x", tiny_spec());
        write_crafted_adapter(root / "group" / "y", tiny_spec());
        write_crafted_adapter(root / "group" / "a", tiny_spec());
        write_crafted_adapter(root / ".hidden" / "z", tiny_spec());
        fs::create_directories(root / "empty" / "deeper");
        fs::create_directory_symlink(root, root / "group" / "loop"); // a cycle back to the top
        const auto found = find_adapter_dirs(root);
        QCOMPARE(found.size(), std::size_t(3));
        QCOMPARE(found[0], root / "group" / "a");
        QCOMPARE(found[1], root / "group" / "y");
        QCOMPARE(found[2], root / "x");
        QCOMPARE(find_adapter_dirs(root / "x"), std::vector<fs::path>{root / "x"});
        QCOMPARE(find_adapter_dirs(root / "x" / "adapter_config.json"), std::vector<fs::path>{root / "x"});

        auto msg = expect_throw<validation_error>([&] { find_adapter_dirs(root / "empty"); });
        EXPECT_MESSAGE(msg, "no PEFT adapters found under");
        msg = expect_throw<io_error>([&] { find_adapter_dirs(root / "does-not-exist"); });
        EXPECT_MESSAGE(msg, "does-not-exist");
    }

    // ---- values that would overflow float32 in a bank, names that cannot be placed ----
    void overflowingAdaptersRefused_data() {
        QTest::addColumn<double>("alpha");
        QTest::addColumn<float>("poison_b");
        QTest::addColumn<QString>("needle");
        QTest::newRow("alpha 1e38") << 1e38 << 0.0f << "too large";
        QTest::newRow("alpha 1e300") << 1e300 << 0.0f << "not finite in float32";
        QTest::newRow("weight 3e38, scale 2") << 16.0 << 3e38f << "overflows float32";
        QTest::newRow("weight 3e38, scale 1") << 8.0 << 3e38f << "too large";
        QTest::newRow("weight 1e30") << 8.0 << 1e30f << "too large";
    }
    void overflowingAdaptersRefused() {
        QFETCH(double, alpha);
        QFETCH(float, poison_b);
        QFETCH(QString, needle);
        auto spec = tiny_spec(8, alpha);
        if (poison_b != 0.0f) spec.modules[1].poison_b = poison_b;
        const auto msg = expect_throw<validation_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, needle);
        EXPECT_MESSAGE(msg, "adapter_model.safetensors"); // names the adapter's file
    }
    void largeButRepresentableAdapterLoads() {
        // |scale B A|_F around 1e15: far beyond real adapters, still exact enough in float32.
        auto spec = tiny_spec(8, 16);
        spec.modules[0].poison_b = 1e14f;
        const auto a = load_peft_adapter(write(spec));
        QCOMPARE(int(a.modules.size()), 4);
    }
    void unplaceableModulesRefused_data() {
        QTest::addColumn<QString>("path");
        QTest::addColumn<QString>("needle");
        QTest::newRow("layer -1") << "model.layers.-1.self_attn.q_proj"
                                  << "is not a number";
        QTest::newRow("layer 999999999999") << "model.layers.999999999999.self_attn.q_proj"
                                            << "is not a number";
        QTest::newRow("path escape") << "../../etc/x"
                                     << "characters outside";
        QTest::newRow("empty component") << "model.layers.0..q_proj"
                                         << "empty component";
        QTest::newRow("no layer") << "model.norm_proj"
                                  << "no \"layers.N\"";
    }
    void unplaceableModulesRefused() {
        QFETCH(QString, path);
        QFETCH(QString, needle);
        auto spec = tiny_spec();
        spec.modules[0].path = path.toStdString();
        const auto msg = expect_throw<validation_error>([&] { load_peft_adapter(write(spec)); });
        EXPECT_MESSAGE(msg, needle);
    }
    void layerBeyondTheBaseRefused() {
        const auto base = tiny(); // 2 layers
        auto spec = tiny_spec();
        spec.modules[0].path = "model.layers.2.self_attn.q_proj";
        EXPECT_MESSAGE(expect_throw<shape_mismatch>([&] {
                           load_peft_adapter(write(spec), {&base, true});
                       }),
                       "layer 2");
        spec.modules[0].path = "model.layers.2000000.self_attn.q_proj";
        EXPECT_MESSAGE(expect_throw<validation_error>([&] { load_peft_adapter(write(spec)); }),
                       "[0, 1048576)");
    }
};

QTEST_APPLESS_MAIN(TestPeftAdapter)
#include "test_peft_adapter.moc"
