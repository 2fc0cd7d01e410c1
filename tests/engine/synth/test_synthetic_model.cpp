// Synthetic model folders (engine/synth/synthetic_model.hpp), checked the way a user of the folder sees
// them: the shards are read back with the safetensors reader and cross-checked against the index, the
// folder is loaded by the serving engine's own loaders (model_weights, load_tokenizer, chat_template) and
// run through the transformer. Expectations are independent of the writer: published parameter counts
// of the real models, the statistics the documented scales imply (logits ~N(0, sigma_head^2 * hidden)
// after the final RMSNorm), and byte-level round trips of arbitrary text.
#include "engine/api/chat_template.hpp"
#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "engine/synth/synthetic_model.hpp"
#include "engine/synth/synthetic_tokenizer.hpp"
#include "tests/support/expect_throw.hpp"
#include "tests/support/file_bytes.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unistd.h>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

using lorafleet::test::expect_throw;
using lorafleet::test::read_bytes;

// Every file of a folder by name, with its bytes.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::directory_iterator(dir))
        out[e.path().filename().string()] = read_bytes(e.path());
    return out;
}

std::size_t entries(const fs::path& dir) {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir))
        ++n;
    return n;
}

synth::synth_model_options tiny_options(const fs::path& out) {
    synth::synth_model_options o;
    o.out_dir = out;
    o.geometry = *io::geometry_preset("tinystories-656k");
    o.seed = 5;
    o.shard_bytes = 256 << 10; // several shards; the 512 KiB embedding gets one of its own
    o.threads = 2;
    return o;
}

// A small Mistral given as a config.json (untied lm_head, GQA 4/2, head_dim 16).
fs::path write_small_mistral_config(const fs::path& dir) {
    fs::create_directories(dir);
    const fs::path p = dir / "config.json";
    std::ofstream(p) << R"({"architectures": ["MistralForCausalLM"], "model_type": "mistral",
        "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 700, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2})";
    return p;
}

double mean_of(const std::vector<float>& v) {
    double s = 0;
    for (float x : v)
        s += x;
    return s / double(v.size());
}

double std_of(const std::vector<float>& v) {
    const double m = mean_of(v);
    double s = 0;
    for (float x : v)
        s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size()));
}

// Logits after the last token of `tokens` (a fresh sequence).
std::vector<float> last_logits(serve::transformer& model, const std::vector<int>& tokens) {
    serve::kv_cache cache = model.make_cache(8u << 20);
    cache.add_sequence(0);
    const serve::sequence_step step{0, tokens, {}, -1, false};
    const auto out = model.forward(cache, std::span(&step, 1));
    const auto row = out.last(0);
    return {row.begin(), row.end()};
}

int argmax(const std::vector<float>& v) {
    return int(std::max_element(v.begin(), v.end()) - v.begin());
}

} // namespace

class TestSyntheticModel : public QObject {
    Q_OBJECT
private slots:
    // Parameter counts of the real checkpoints (as their model cards and transformers report them).
    void planMatchesThePublishedParameterCounts() {
        const std::map<std::string, std::uint64_t> published{{"tinyllama-1.1b", 1'100'048'384ull},
                                                             {"mistral-7b", 7'241'732'096ull},
                                                             {"llama-2-7b", 6'738'415'616ull},
                                                             {"llama-3-8b", 8'030'261'248ull}};
        for (const auto& [name, params] : published) {
            synth::synth_model_options o;
            o.out_dir = "unused";
            o.geometry = *io::geometry_preset(name);
            const auto plan = synth::plan_synthetic_model(o);
            QCOMPARE(plan.tensor_bytes, params * 2); // bf16
            // Shards of at most 2 GiB each, filled greedily in model order: a shard ends only when its
            // next tensor would not fit.
            std::vector<std::uint64_t> per_shard(std::size_t(plan.shards)), first(std::size_t(plan.shards));
            int last = -1;
            for (const auto& t : plan.tensors) {
                QVERIFY(t.shard == last || t.shard == last + 1);
                if (t.shard != last) first[std::size_t(t.shard)] = t.bytes;
                last = t.shard;
                per_shard[std::size_t(t.shard)] += t.bytes;
            }
            QCOMPARE(last, plan.shards - 1);
            for (std::size_t s = 0; s < per_shard.size(); ++s) {
                QVERIFY(per_shard[s] <= synth::default_shard_bytes);
                if (s + 1 < per_shard.size())
                    QVERIFY(per_shard[s] + first[s + 1] > synth::default_shard_bytes);
            }
            QVERIFY(plan.shards >= int(plan.tensor_bytes / synth::default_shard_bytes));
        }
        // --layers cuts the depth and nothing else.
        synth::synth_model_options o;
        o.out_dir = "unused";
        o.geometry = *io::geometry_preset("mistral-7b");
        o.layers = 1;
        const auto plan = synth::plan_synthetic_model(o);
        QCOMPARE(plan.geometry.num_layers, 1);
        // 2 x 32000 x 4096 (embed, lm_head) + one layer (2 x 4096^2 + 2 x 1024 x 4096 + 3 x 4096 x 14336
        // + 2 x 4096) + the final norm 4096.
        QCOMPARE(plan.tensor_bytes, 2ull * (2ull * 32000 * 4096 + 218'112'000ull + 4096));
    }

    void writesAFolderTheEngineLoads() {
        QTemporaryDir tmp;
        const fs::path out = fs::path(tmp.path().toStdString()) / "model";
        const auto result = synth::write_synthetic_model(tiny_options(out));

        // Index and shards agree, as read back from the files.
        const auto index = nlohmann::json::parse(read_bytes(out / "model.safetensors.index.json"));
        const auto& map = index["weight_map"];
        std::set<std::string> shard_files;
        for (const auto& [name, file] : map.items())
            shard_files.insert(file.get<std::string>());
        const int n = int(shard_files.size());
        QVERIFY2(n >= 3, "the 256 KiB shard limit gives several shards");
        std::map<std::string, std::string> found; // tensor -> shard holding it
        std::uint64_t data_bytes = 0, file_bytes = 0;
        for (int s = 1; s <= n; ++s) {
            char name[64];
            std::snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s, n);
            QVERIFY2(shard_files.count(name), name);
            const std::string bytes = read_bytes(out / name);
            const auto header = io::parse_safetensors_header(std::as_bytes(std::span(bytes)), name);
            QCOMPARE(header.metadata.at("format"), std::string("pt"));
            for (const auto& t : header.tensors) {
                QVERIFY2(found.emplace(t.name, name).second, "a tensor in two shards");
                QCOMPARE(t.type, io::dtype::BF16);
                data_bytes += t.end - t.begin;
            }
            file_bytes += bytes.size();
        }
        QCOMPARE(found.size(), map.size());
        for (const auto& [tensor, shard] : found)
            QCOMPARE(map.at(tensor).get<std::string>(), shard);
        QCOMPARE(index["metadata"]["total_size"].get<std::uint64_t>(), data_bytes);
        QCOMPARE(data_bytes, result.plan.tensor_bytes);
        // 2 layers x 9 tensors + embed + final norm (tied: no lm_head).
        QCOMPARE(found.size(), std::size_t(20));
        QVERIFY(!found.count("lm_head.weight"));
        std::size_t safetensors = 0;
        for (const auto& e : fs::directory_iterator(out))
            safetensors += e.path().extension() == ".safetensors";
        QCOMPARE(safetensors, shard_files.size());
        std::uint64_t total = 0;
        for (const auto& e : fs::directory_iterator(out))
            total += e.file_size();
        QCOMPARE(result.bytes, total);
        QVERIFY(file_bytes > data_bytes);

        // The engine's loaders accept it, with the preset's geometry and the tokenizer's vocabulary.
        const auto weights = serve::model_weights::load(out);
        const auto& g = weights->geometry();
        QCOMPARE(g.architecture, std::string("LlamaForCausalLM"));
        QCOMPARE(g.hidden_size, 128);
        QCOMPARE(g.num_layers, 2);
        QCOMPARE(g.vocab_size, 2048);
        QVERIFY(g.tie_word_embeddings);
        const auto tok = serve::load_tokenizer(out);
        QCOMPARE(tok->vocab_size(), 2048);
        QCOMPARE(tok->bos_id(), 1);
        QCOMPARE(tok->eos_ids(), std::vector<int>{2});
        QCOMPARE(api::chat_template::from_model_dir(out).format(), api::chat_format::zephyr);

        // Scales as documented, measured on the stored values.
        std::map<std::string, std::shared_ptr<const io::safetensors_file>> open;
        for (const auto& f : shard_files)
            open[f] = io::safetensors_file::open(out / f);
        for (const auto& [tensor, shard] : found) {
            const auto& view = open.at(shard)->at(tensor);
            const auto v = view.to_f32();
            if (view.shape().size() == 1) {
                for (float x : v)
                    QCOMPARE(x, 1.0f); // RMSNorm weights
                continue;
            }
            const double want = 1.0 / std::sqrt(double(view.shape()[1])); // 1/sqrt(d_in), embed: 1/sqrt(d)
            const double sd = std_of(v);
            QVERIFY2(std::abs(sd / want - 1.0) < 0.03,
                     qPrintable(QString::fromStdString(tensor) + " std " + QString::number(sd) + " want " +
                                QString::number(want)));
            QVERIFY(std::abs(mean_of(v)) < 0.05 * want);
        }
    }

    void generatesFiniteNonDegenerateLogits() {
        QTemporaryDir tmp;
        const fs::path out = fs::path(tmp.path().toStdString()) / "model";
        synth::write_synthetic_model(tiny_options(out));
        const auto tok = serve::load_tokenizer(out);
        serve::transformer model(serve::model_weights::load(out), 2);

        const auto prompt = tok->encode("Once upon a time there was a little robot");
        const auto logits = last_logits(model, prompt);
        QCOMPARE(logits.size(), std::size_t(2048));
        for (float x : logits)
            QVERIFY(std::isfinite(x));
        // The final RMSNorm leaves a unit-RMS state and lm_head (tied: the embedding) is N(0, 1/128): the
        // logits are ~N(0, 1) over the 2048 tokens.
        QVERIFY2(std::abs(std_of(logits) - 1.0) < 0.15, qPrintable(QString::number(std_of(logits))));
        QVERIFY(std::abs(mean_of(logits)) < 0.15);
        // They depend on the input: another prompt gives another distribution.
        const auto other = last_logits(model, tok->encode("Quantum physics and the price of tea"));
        double diff = 0;
        for (std::size_t i = 0; i < logits.size(); ++i)
            diff = std::max(diff, double(std::abs(logits[i] - other[i])));
        QVERIFY2(diff > 0.5, qPrintable(QString::number(diff)));

        // Greedy decoding does not collapse onto one token (an all-zero or saturated model would).
        std::vector<int> seq = prompt;
        std::set<int> distinct;
        for (int i = 0; i < 16; ++i) {
            const int next = argmax(last_logits(model, seq));
            distinct.insert(next);
            seq.push_back(next);
        }
        QVERIFY2(distinct.size() >= 3, qPrintable(QString::number(distinct.size())));
    }

    void sameSeedSameBytesAnyThreadsOtherSeedOtherWeights() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        auto a = tiny_options(root / "a");
        auto b = tiny_options(root / "b" / ""); // "b/": the folder b
        b.threads = 3;
        auto c = tiny_options(root / "c");
        c.seed = 6;
        synth::write_synthetic_model(a);
        synth::write_synthetic_model(b);
        synth::write_synthetic_model(c);
        const auto sa = snapshot(a.out_dir), sb = snapshot(root / "b"), sc = snapshot(c.out_dir);
        QVERIFY(sa == sb);
        QCOMPARE(sa.size(), sc.size());
        for (const auto& [name, bytes] : sa) {
            if (name.ends_with(".safetensors"))
                QVERIFY2(sc.at(name) != bytes, name.c_str()); // other random weights
            else if (name != "config.json")                   // the config records the seed
                QVERIFY2(sc.at(name) == bytes, name.c_str()); // same tokenizer and index
        }

        // The depth cut and the dtype change nothing else: layer 0 of a 1-layer fp32 model, rounded to
        // bf16, is layer 0 of the 2-layer bf16 model, bit for bit.
        auto d = tiny_options(root / "d");
        d.layers = 1;
        d.dtype = io::dtype::F32;
        d.shard_bytes = synth::default_shard_bytes;
        synth::write_synthetic_model(d);
        const auto f32 = io::safetensors_file::open(d.out_dir / "model-00001-of-00001.safetensors");
        QVERIFY(!f32->find("model.layers.1.mlp.up_proj.weight"));
        const auto index = nlohmann::json::parse(read_bytes(a.out_dir / "model.safetensors.index.json"));
        for (const std::string name : {"model.layers.0.mlp.up_proj.weight", "model.embed_tokens.weight"}) {
            const auto bf16 =
                io::safetensors_file::open(a.out_dir / index["weight_map"][name].get<std::string>());
            const auto& wide = f32->at(name);
            const auto& narrow = bf16->at(name);
            QCOMPARE(wide.type(), io::dtype::F32);
            QCOMPARE(wide.numel(), narrow.numel());
            const auto* w = reinterpret_cast<const float*>(wide.bytes.data());
            const auto* n = reinterpret_cast<const std::uint16_t*>(narrow.bytes.data());
            for (std::int64_t i = 0; i < wide.numel(); ++i)
                if (f32_to_bf16(w[i]) != n[i])
                    QFAIL(qPrintable(QString::fromStdString(name) + " element " + QString::number(i)));
        }
    }

    void mistralFromAConfigFile() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        synth::synth_model_options o;
        o.out_dir = root / "mistral";
        o.geometry = io::resolve_geometry((write_small_mistral_config(root / "src")).string());
        o.dtype = io::dtype::F16;
        o.threads = 1;
        synth::write_synthetic_model(o);
        const auto weights = serve::model_weights::load(o.out_dir);
        QCOMPARE(weights->geometry().architecture, std::string("MistralForCausalLM"));
        QCOMPARE(weights->geometry().num_layers, 3);
        QCOMPARE(weights->geometry().rope_theta, 1e6);
        QVERIFY(!weights->geometry().tie_word_embeddings);
        const auto shard = io::safetensors_file::open(o.out_dir / "model-00001-of-00001.safetensors");
        QCOMPARE(shard->at("lm_head.weight").type(), io::dtype::F16);
        QCOMPARE(shard->at("lm_head.weight").shape(), (std::vector<std::int64_t>{700, 64}));
        QCOMPARE(api::chat_template::from_model_dir(o.out_dir).format(), api::chat_format::mistral);

        const auto tok = serve::load_tokenizer(o.out_dir);
        QCOMPARE(tok->vocab_size(), 700);
        serve::transformer model(weights, 1);
        const auto logits = last_logits(model, tok->encode("[INST] hello [/INST]"));
        for (float x : logits)
            QVERIFY(std::isfinite(x));
        // Untied lm_head N(0, 1/64) after a unit-RMS state: logits ~N(0, 1) over 700 tokens.
        QVERIFY2(std::abs(std_of(logits) - 1.0) < 0.15, qPrintable(QString::number(std_of(logits))));
    }

    // The tokenizer as the engine's loader runs it: exact vocabulary size, specials where the geometry
    // says, merges that shorten English, and a byte-exact round trip of any UTF-8.
    void tokenizerFillsTheVocabularyAndRoundTrips() {
        auto g = *io::geometry_preset("llama-3-8b");
        const auto files = synth::make_synthetic_tokenizer(g);
        serve::special_tokens special;
        special.bos = g.bos_token_id;
        special.eos = {g.eos_token_id};
        const auto tok = serve::parse_hf_tokenizer(files.tokenizer_json, "llama-3-8b", special);
        QCOMPARE(tok->vocab_size(), 128256);
        QCOMPARE(tok->token_text(128000), std::string("<s>"));
        QCOMPARE(tok->token_text(128001), std::string("</s>"));
        QVERIFY(tok->is_special(128000) && tok->is_special(128001) && !tok->is_special(0));
        std::set<std::string> pieces;
        for (int id = 0; id < tok->vocab_size(); ++id) {
            const auto t = tok->token_text(id);
            QVERIFY(!t.empty());
            pieces.insert(t);
        }
        QCOMPARE(pieces.size(), std::size_t(128256)); // every id its own piece

        const std::string text = "the quick brown fox, naïve café 😀\n\ttabs  and  $12.50 <s>";
        const auto ids = tok->encode(text, false);
        QCOMPARE(tok->decode(ids, false), text);
        // Short words with their leading space are single tokens (Ġ + up to 3 letters are in a vocabulary
        // this large); longer ones split.
        const auto words = tok->encode(" the and for you are", false);
        QCOMPARE(words.size(), std::size_t(5));
        QCOMPARE(tok->token_text(words[3]), std::string("\xC4\xA0you"));
        QCOMPARE(tok->encode(" that", false).size(), std::size_t(2));
        const auto with_bos = tok->encode("hi", true);
        QCOMPARE(with_bos.front(), 128000);

        // Vocabularies the rules cannot fill are refused up front.
        g.vocab_size = 200;
        QVERIFY(
            expect_throw<usage_error>([&] { synth::make_synthetic_tokenizer(g); }).contains("vocab_size"));
    }

    // Reference ids from HuggingFace's own library (tokenizers 0.23.3, Tokenizer.from_file on the
    // tinystories-656k geometry's tokenizer.json, encode(text).ids): the file means to HF what it means to
    // us.
    void matchesTheHuggingFaceTokenizersLibrary() {
        const auto files = synth::make_synthetic_tokenizer(*io::geometry_preset("tinystories-656k"));
        const auto tok = serve::parse_hf_tokenizer(files.tokenizer_json, "tinystories-656k", {});
        const std::vector<std::pair<std::string, std::vector<int>>> reference{
            {"Once upon a time, the little cat sat on a mat.",
             {1,   81,   112, 347, 348, 114, 306, 263,  1012, 376, 46,  260, 311,
              312, 1062, 322, 335, 270, 285, 270, 1125, 263,  362, 270, 48}},
            {"na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x98\x80\n\tand  spaces",
             {1,   299, 197, 177, 509, 335, 413, 197, 171, 34,  242, 161,
              154, 130, 12,  11,  296, 102, 34,  285, 114, 365, 286}},
            {"it's 2024: <s>ok</s>", {1, 283, 41, 117, 34, 52, 50, 52, 54, 60, 34, 1, 586, 2}},
        };
        for (const auto& [text, ids] : reference)
            QCOMPARE(tok->encode(text), ids);
    }

    void refusesToClobberAndLeavesNothingOnFailure() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        // A non-empty folder that is not a model: refused with and without force.
        fs::create_directories(root / "busy");
        std::ofstream(root / "busy" / "notes.txt") << "mine";
        auto o = tiny_options(root / "busy");
        QVERIFY(expect_throw<usage_error>([&] { synth::write_synthetic_model(o); }).contains("--force"));
        o.force = true;
        QVERIFY(
            expect_throw<usage_error>([&] { synth::write_synthetic_model(o); }).contains("no config.json"));
        QCOMPARE(read_bytes(root / "busy" / "notes.txt"), std::string("mine"));

        // A model folder is replaced only with force, and then completely.
        auto m = tiny_options(root / "model");
        synth::write_synthetic_model(m);
        m.seed = 9;
        QVERIFY(expect_throw<usage_error>([&] { synth::write_synthetic_model(m); }).contains("not empty"));
        m.force = true;
        m.shard_bytes = synth::default_shard_bytes;
        synth::write_synthetic_model(m);
        QVERIFY(!fs::exists(root / "model" / "model-00002-of-00002.safetensors")); // no stale shard left
        QVERIFY(fs::exists(root / "model" / "model-00001-of-00001.safetensors"));

        // Cancelled half-way: nothing at the target, no staging folder left.
        auto c = tiny_options(root / "cancelled");
        int calls = 0;
        QCOMPARE(expect_throw<cancelled_error>([&] {
                     synth::write_synthetic_model(c, [&](std::uint64_t done, std::uint64_t total) {
                         ++calls;
                         return done < total / 2;
                     });
                 }),
                 QString("cancelled"));
        QVERIFY(calls >= 2);
        QVERIFY(!fs::exists(root / "cancelled"));

        // A parent that is a file: a clear io_error naming the target, nothing created.
        std::ofstream(root / "plain-file") << "x";
        auto f = tiny_options(root / "plain-file" / "model");
        QVERIFY(
            expect_throw<io_error>([&] { synth::write_synthetic_model(f); }).contains("plain-file/model"));

        // More than the disk holds: refused before anything is written, with both numbers.
        std::ofstream(root / "huge.json")
            << R"({"model_type": "llama", "hidden_size": 1048576, "intermediate_size": 1048576,
                  "num_hidden_layers": 1, "num_attention_heads": 8192, "vocab_size": 1000})";
        synth::synth_model_options h;
        h.out_dir = root / "huge";
        h.geometry = io::resolve_geometry((root / "huge.json").string());
        const QString msg = expect_throw<io_error>([&] { synth::write_synthetic_model(h); });
        QVERIFY2(msg.contains("not enough free space") && msg.contains("GB are available"), qPrintable(msg));
        QVERIFY(!fs::exists(root / "huge"));

        // Only what the test made is left: busy, model, plain-file, huge.json (no staging folders).
        QCOMPARE(entries(root), std::size_t(4));
    }

    void readOnlyParentIsAnIoError() {
        if (::geteuid() == 0) QSKIP("running as root: permissions are not enforced");
        QTemporaryDir tmp;
        const fs::path ro = fs::path(tmp.path().toStdString()) / "ro";
        fs::create_directories(ro);
        fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
        const QString msg =
            expect_throw<io_error>([&] { synth::write_synthetic_model(tiny_options(ro / "m")); });
        fs::permissions(ro, fs::perms::owner_all);
        QVERIFY2(msg.contains("Permission denied"), qPrintable(msg));
        QCOMPARE(entries(ro), std::size_t(0));
    }

    void badOptionsAreUsageErrors() {
        auto o = tiny_options("unused");
        o.layers = 3;
        QVERIFY(expect_throw<usage_error>([&] { synth::plan_synthetic_model(o); }).contains("--layers"));
        o = tiny_options("unused");
        o.dtype = io::dtype::I32;
        QVERIFY(expect_throw<usage_error>([&] { synth::plan_synthetic_model(o); }).contains("--dtype"));
        o = tiny_options("unused");
        o.shard_bytes = 0;
        QVERIFY(expect_throw<usage_error>([&] { synth::plan_synthetic_model(o); }).contains("shard"));
        o = tiny_options("unused");
        o.geometry.rope_scaling = true;
        QVERIFY(expect_throw<usage_error>([&] { synth::plan_synthetic_model(o); }).contains("rope_scaling"));
        o = tiny_options("unused");
        o.geometry.eos_token_id = 5000;
        QVERIFY(expect_throw<usage_error>([&] { synth::plan_synthetic_model(o); }).contains("eos_token_id"));
    }
};

QTEST_APPLESS_MAIN(TestSyntheticModel)
#include "test_synthetic_model.moc"
