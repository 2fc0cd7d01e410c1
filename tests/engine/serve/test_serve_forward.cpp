// serve forward pass against an independent reference: the TinyStories-656K fixture's logits at 64
// positions, computed by a separate PyTorch Llama implementation (../shared/fixtures/reference). Checked
// for a whole-sequence prefill, token-by-token decoding through the paged KV cache, and a continuous-
// batching mix of sequences at different positions (each must match its solo run). Also: F16/BF16/sharded
// copies of the checkpoint, the adapter seam (raw LoRA through RawLoraDelta equals the merged dense
// model, written as a real checkpoint), configs that must be refused, and KV-cache capacity errors.
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/serve/adapters/raw_lora_delta.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/expect_throw.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;

namespace {

using lorafleet::test::expect_throw;

// ---- Fixtures ---------------------------------------------------------------------------------------------
fs::path model_dir() {
    return test::fixtures_dir() / "models/tinystories-656k";
}

struct reference {
    std::vector<int> tokens;   // [64] BOS + greedy tokens
    std::vector<int> greedy;   // greedy continuation from BOS up to EOS (BOS first)
    std::vector<int> argmax;   // [64]
    std::vector<float> logits; // [64, vocab]
    std::string greedy_text;
    int vocab = 0;
    std::span<const float> row(int t) const {
        return {logits.data() + std::size_t(t) * vocab, std::size_t(vocab)};
    }
};

const reference& ref() {
    static const reference r = [] {
        reference out;
        const auto dir = test::fixtures_dir() / "reference";
        std::ifstream j(dir / "tinystories656k_bos_greedy64.json");
        const auto doc = nlohmann::json::parse(j);
        out.tokens = doc["tokens"].get<std::vector<int>>();
        out.greedy = doc["greedy_from_bos"].get<std::vector<int>>();
        out.argmax = doc["argmax"].get<std::vector<int>>();
        out.greedy_text = doc["greedy_text"].get<std::string>();
        out.vocab = doc["logits_shape"][1].get<int>();
        std::ifstream f(dir / "tinystories656k_bos_greedy64.logits.f32", std::ios::binary);
        out.logits.resize(std::size_t(doc["logits_shape"][0].get<int>()) * out.vocab);
        f.read(reinterpret_cast<char*>(out.logits.data()),
               std::streamsize(out.logits.size() * sizeof(float)));
        if (!f) qFatal("cannot read the reference logits");
        return out;
    }();
    return r;
}

float max_abs_diff(std::span<const float> a, std::span<const float> b) {
    if (a.size() != b.size()) return INFINITY;
    float m = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

int argmax(std::span<const float> v) {
    return int(std::max_element(v.begin(), v.end()) - v.begin());
}

constexpr float logit_tolerance = 1e-4f;

// ---- Writing modified copies of the fixture
// -----------------------------------------------------------------
using tensor_map = std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>>;

tensor_map read_fixture_tensors() {
    tensor_map out;
    auto f = io::safetensors_file::open(model_dir() / "model.safetensors");
    for (const auto& t : f->tensors())
        out[t.name()] = {t.shape(), t.to_f32()};
    return out;
}

nlohmann::json read_fixture_config() {
    std::ifstream in(model_dir() / "config.json");
    return nlohmann::json::parse(in);
}

void write_text(const fs::path& p, const std::string& text) {
    std::ofstream out(p, std::ios::binary);
    out << text;
}

// Writes `tensors` as one file (or split across `shards` files with an index) plus `config`.
void write_model(const fs::path& dir, const tensor_map& tensors, const nlohmann::json& config,
                 io::dtype type = io::dtype::F32, int shards = 1,
                 const std::map<std::string, std::string>& metadata = {}) {
    fs::create_directories(dir);
    write_text(dir / "config.json", config.dump(2));
    std::vector<std::vector<std::byte>> storage;
    std::vector<std::vector<io::tensor_data>> files(static_cast<std::size_t>(shards));
    nlohmann::json index;
    int i = 0;
    for (const auto& [name, t] : tensors) {
        storage.push_back(io::encode_f32(t.second, type));
        const int shard = i++ % shards;
        files[std::size_t(shard)].push_back({name, type, t.first, storage.back()});
        index["weight_map"][name] = "model-" + std::to_string(shard) + ".safetensors";
    }
    if (shards == 1) {
        io::write_safetensors(dir / "model.safetensors", files[0], metadata);
    } else {
        for (int s = 0; s < shards; ++s)
            io::write_safetensors(dir / ("model-" + std::to_string(s) + ".safetensors"),
                                  files[std::size_t(s)]);
        write_text(dir / "model.safetensors.index.json", index.dump(2));
    }
}

// Logits of the 64 reference tokens from one prefill with all_logits.
std::vector<float> prefill_logits(transformer& model, std::span<const int> tokens,
                                  AdapterDelta* adapters = nullptr, int slot = -1) {
    kv_cache cache = model.make_cache(8u << 20);
    cache.add_sequence(0);
    const sequence_step step{0, tokens, {}, slot, true};
    return model.forward(cache, std::span(&step, 1), adapters).values;
}

// Random LoRA factors for every module of every layer, scaled so the update is visible but moderate.
void add_random_adapter(RawLoraDelta& delta, const io::model_geometry& g, int slot, std::uint64_t seed,
                        tensor_map* merge_into) {
    for (int l = 0; l < g.num_layers; ++l)
        for (int k = 0; k < module_kind_count; ++k) {
            const auto m = static_cast<module_kind>(k);
            const auto shape = *g.linear_shape(module_name(m));
            lora_module_weights w;
            w.rank = 4 + (l + k) % 3;
            w.scale = 2.0f / float(w.rank);
            auto rng = random_stream::derive(seed, {std::uint64_t(l), std::uint64_t(k)});
            w.a.resize(std::size_t(w.rank * shape.d_in));
            w.b.resize(std::size_t(shape.d_out * w.rank));
            for (auto& v : w.a)
                v = float(rng.normal() * 0.1);
            for (auto& v : w.b)
                v = float(rng.normal() * 0.1);
            if (merge_into) { // W += s · B · A, dense, in double
                const bool attn = k <= 3;
                const std::string name = "model.layers." + std::to_string(l) +
                                         (attn ? ".self_attn." : ".mlp.") + std::string(module_name(m)) +
                                         ".weight";
                auto& W = (*merge_into)[name].second;
                for (std::int64_t o = 0; o < shape.d_out; ++o)
                    for (std::int64_t i = 0; i < shape.d_in; ++i) {
                        double s = 0;
                        for (int r = 0; r < w.rank; ++r)
                            s += double(w.b[std::size_t(o * w.rank + r)]) *
                                 w.a[std::size_t(r * shape.d_in + i)];
                        W[std::size_t(o * shape.d_in + i)] += float(w.scale * s);
                    }
            }
            delta.set_module(slot, l, m, std::move(w));
        }
}

} // namespace

class TestServeForward : public QObject {
    Q_OBJECT
private slots:
    void init() { LORAFLEET_REQUIRE_FIXTURES(); }

    // ---- The fixture model against the reference ----
    void loadsTiedFixture() {
        auto w = model_weights::load(model_dir());
        QCOMPARE(w->geometry().num_layers, 2);
        QCOMPARE(w->layers.size(), std::size_t(2));
        QCOMPARE(w->embed.rows, std::int64_t(2048));
        QCOMPARE(w->embed.cols, std::int64_t(128));
        QVERIFY(w->embed.data == w->lm_head.data); // tied: one tensor, stored as lm_head.weight only
        QCOMPARE(w->max_context(), 512);
        QVERIFY(w->layers[0][module_kind::q_proj].bias.empty());
    }

    void prefillMatchesReference() {
        transformer model(model_weights::load(model_dir()));
        const auto logits = prefill_logits(model, ref().tokens);
        QCOMPARE(logits.size(), ref().logits.size());
        const float diff = max_abs_diff(logits, ref().logits);
        qInfo("prefill: max |logit - reference| = %.3g", double(diff));
        QVERIFY2(diff < logit_tolerance, qPrintable(QString::number(diff)));
        for (int t = 0; t < 64; ++t)
            QCOMPARE(argmax({logits.data() + std::size_t(t) * 2048, 2048}), ref().argmax[std::size_t(t)]);
    }

    void decodeTokenByTokenMatchesReference() {
        transformer model(model_weights::load(model_dir()));
        kv_cache cache = model.make_cache(1u << 20);
        cache.add_sequence(7);
        float worst = 0;
        for (int t = 0; t < 64; ++t) {
            const sequence_step step{7, std::span(&ref().tokens[std::size_t(t)], 1), {}, -1, false};
            const auto out = model.forward(cache, std::span(&step, 1));
            QCOMPARE(out.rows(), 1);
            worst = std::max(worst, max_abs_diff(out.last(0), ref().row(t)));
            QCOMPARE(argmax(out.last(0)), ref().argmax[std::size_t(t)]);
            QCOMPARE(cache.length(7), t + 1);
        }
        qInfo("decode: max |logit - reference| = %.3g", double(worst));
        QVERIFY2(worst < logit_tolerance, qPrintable(QString::number(worst)));
    }

    void greedyGenerationMatchesReference() {
        transformer model(model_weights::load(model_dir()));
        auto tok = load_tokenizer(model_dir());
        generation_params p;
        p.max_tokens = 400;
        const int bos = 1;
        const auto r = generate(model, *tok, std::span(&bos, 1), p);
        // greedy_from_bos = BOS, the continuation, then EOS (2), which generate() leaves out.
        std::vector<int> expected(ref().greedy.begin() + 1, ref().greedy.end());
        if (!expected.empty() && expected.back() == 2) expected.pop_back();
        QCOMPARE(r.reason, finish_reason::eos);
        QCOMPARE(r.tokens, expected);
        QCOMPARE(r.text, ref().greedy_text.substr(0, r.text.size()));
    }

    // Sequences at different positions in one step, with chunk sizes that vary per step; every row of every
    // sequence must match the reference, and the same schedule run one sequence at a time must give
    // bitwise the same logits (the forward pass is batch-invariant by construction, see gemm.hpp).
    void continuousBatchingMatchesSoloRuns() {
        transformer model(model_weights::load(model_dir()));
        const auto& toks = ref().tokens;
        struct seq_state {
            int id, done;
            std::vector<int> chunks;
        };
        // Sequence i starts at a different step and feeds chunks of different sizes (1 = decode).
        std::vector<seq_state> seqs = {
            {10, 0, {64}},
            {11, 0, {1, 1, 1, 5, 1, 1, 20, 1, 1, 1, 31}},
            {12, 0, {30, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                     1,  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
            {13, 0, {7, 7, 7, 7, 7, 7, 7, 7, 7, 1}},
        };
        std::map<int, std::vector<float>> batched, solo; // seq id -> [64, vocab]
        kv_cache cache = model.make_cache(4u << 20);
        for (auto& s : seqs)
            cache.add_sequence(s.id);
        std::vector<std::size_t> next(seqs.size(), 0);
        for (int step = 0;; ++step) {
            std::vector<sequence_step> batch;
            std::vector<std::size_t> which;
            for (std::size_t i = 0; i < seqs.size(); ++i) {
                if (int(i) > step || next[i] >= seqs[i].chunks.size()) continue; // staggered starts
                const int n = seqs[i].chunks[next[i]];
                batch.push_back({seqs[i].id,
                                 std::span(toks).subspan(std::size_t(seqs[i].done), std::size_t(n)),
                                 {},
                                 -1,
                                 true});
                which.push_back(i);
            }
            if (batch.empty() && step > int(seqs.size())) break;
            if (batch.empty()) continue;
            const auto out = model.forward(cache, batch);
            for (std::size_t b = 0; b < batch.size(); ++b) {
                auto& s = seqs[which[b]];
                for (int r = out.first_row[b]; r < out.first_row[b + 1]; ++r) {
                    const auto row = out.row(r);
                    batched[s.id].insert(batched[s.id].end(), row.begin(), row.end());
                }
                s.done += s.chunks[next[which[b]]++];
            }
        }
        for (auto& s : seqs) {
            QCOMPARE(s.done, 64);
            QCOMPARE(cache.length(s.id), 64);
            kv_cache alone = model.make_cache(1u << 20);
            alone.add_sequence(0);
            int done = 0;
            for (int n : s.chunks) {
                const sequence_step st{
                    0, std::span(toks).subspan(std::size_t(done), std::size_t(n)), {}, -1, true};
                const auto out = model.forward(alone, std::span(&st, 1));
                solo[s.id].insert(solo[s.id].end(), out.values.begin(), out.values.end());
                done += n;
            }
            const float vs_ref = max_abs_diff(batched[s.id], ref().logits);
            const float vs_solo = max_abs_diff(batched[s.id], solo[s.id]);
            qInfo("sequence %d: max diff vs reference %.3g, vs solo run %.3g", s.id, double(vs_ref),
                  double(vs_solo));
            QVERIFY(vs_ref < logit_tolerance);
            QCOMPARE(batched[s.id], solo[s.id]);
            for (int t = 0; t < 64; ++t)
                QCOMPARE(argmax({batched[s.id].data() + std::size_t(t) * 2048, 2048}),
                         ref().argmax[std::size_t(t)]);
        }
    }

    void explicitPositionsRewindTheCache() {
        transformer model(model_weights::load(model_dir()));
        kv_cache cache = model.make_cache(1u << 20);
        cache.add_sequence(1);
        const auto& toks = ref().tokens;
        const sequence_step first{1, std::span(toks).subspan(0, 40), {}, -1, false};
        model.forward(cache, std::span(&first, 1));
        // Rewind to position 20 and feed positions 20..29 again: logits as at position 29 of the reference.
        std::vector<int> pos(10);
        for (int i = 0; i < 10; ++i)
            pos[std::size_t(i)] = 20 + i;
        const sequence_step again{1, std::span(toks).subspan(20, 10), pos, -1, false};
        const auto out = model.forward(cache, std::span(&again, 1));
        QVERIFY(max_abs_diff(out.last(0), ref().row(29)) < logit_tolerance);
        QCOMPARE(cache.length(1), 30);
        // Skipping ahead is refused.
        std::vector<int> gap = {35};
        const sequence_step skip{1, std::span(toks).subspan(35, 1), gap, -1, false};
        QVERIFY(
            expect_throw<usage_error>([&] { model.forward(cache, std::span(&skip, 1)); }).contains("skips"));
    }

    void malformedStepsAreRefused() {
        transformer model(model_weights::load(model_dir()));
        kv_cache cache = model.make_cache(1u << 20);
        cache.add_sequence(1);
        const int bad_token = 5000, good = 1;
        const sequence_step oov{1, std::span(&bad_token, 1), {}, -1, false};
        QVERIFY(expect_throw<usage_error>([&] {
                    model.forward(cache, std::span(&oov, 1));
                }).contains("vocabulary"));
        const sequence_step unknown{99, std::span(&good, 1), {}, -1, false};
        QVERIFY(
            expect_throw<usage_error>([&] { model.forward(cache, std::span(&unknown, 1)); }).contains("99"));
        const sequence_step twice[2] = {{1, std::span(&good, 1), {}, -1, false},
                                        {1, std::span(&good, 1), {}, -1, false}};
        QVERIFY(expect_throw<usage_error>([&] { model.forward(cache, twice); }).contains("twice"));
        QCOMPARE(cache.length(1), 0);
        // Past max_position_embeddings (512).
        std::vector<int> many(513, 1);
        kv_cache big = model.make_cache(64u << 20);
        big.add_sequence(0);
        const sequence_step too_long{0, many, {}, -1, false};
        QVERIFY(expect_throw<usage_error>([&] {
                    model.forward(big, std::span(&too_long, 1));
                }).contains("context"));
    }

    // ---- Checkpoint variants ----
    void bf16F16AndShardedCopiesLoad() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        const auto tensors = read_fixture_tensors();
        const auto config = read_fixture_config();
        write_model(root / "bf16", tensors, config, io::dtype::BF16);
        write_model(root / "f16", tensors, config, io::dtype::F16);
        write_model(root / "sharded", tensors, config, io::dtype::F32, 3);
        transformer base(model_weights::load(model_dir()));
        const auto expected = prefill_logits(base, ref().tokens);
        {
            // The fixture's values are exact in bf16, so the bf16 copy must give the same logits exactly.
            transformer m(model_weights::load(root / "bf16"));
            QCOMPARE(prefill_logits(m, ref().tokens), expected);
        }
        {
            transformer m(model_weights::load(root / "sharded"));
            QCOMPARE(prefill_logits(m, ref().tokens), expected);
        }
        {
            transformer m(model_weights::load(root / "f16")); // f16 rounds tiny values: close, not equal
            const float diff = max_abs_diff(prefill_logits(m, ref().tokens), expected);
            qInfo("f16 copy: max diff %.3g", double(diff));
            QVERIFY(diff < 0.05f);
        }
    }

    void untiedModelNeedsLmHead() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        auto tensors = read_fixture_tensors();
        auto config = read_fixture_config();
        config["tie_word_embeddings"] = false;
        // Untied with both matrices present (same values): same logits.
        tensors["model.embed_tokens.weight"] = tensors["lm_head.weight"];
        write_model(root / "untied", tensors, config);
        transformer m(model_weights::load(root / "untied"));
        QVERIFY(m.weights().embed.data != m.weights().lm_head.data);
        QVERIFY(max_abs_diff(prefill_logits(m, ref().tokens), ref().logits) < logit_tolerance);
        tensors.erase("lm_head.weight");
        write_model(root / "no_head", tensors, config);
        const auto msg = expect_throw<shape_mismatch>([&] { model_weights::load(root / "no_head"); });
        QVERIFY2(msg.contains("lm_head.weight") && msg.contains("missing"), qPrintable(msg));
    }

    void unsupportedConfigsAreRefused() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        const auto tensors = read_fixture_tensors();
        auto check = [&](const char* name, const std::function<void(nlohmann::json&)>& edit,
                         const char* needle) {
            auto config = read_fixture_config();
            edit(config);
            write_model(root / name, tensors, config);
            const auto msg = expect_throw<unsupported_error>([&] { model_weights::load(root / name); });
            QVERIFY2(msg.contains(needle), qPrintable(QString(name) + ": " + msg));
        };
        check(
            "rope_linear",
            [](auto& c) {
                c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
            },
            "rope_scaling");
        check(
            "rope_llama3",
            [](auto& c) {
                c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
            },
            "rope_scaling");
        check(
            "gemma",
            [](auto& c) {
                c["model_type"] = "gemma";
                c["architectures"] = {"GemmaForCausalLM"};
            },
            "gemma");
        check(
            "gelu", [](auto& c) { c["hidden_act"] = "gelu"; }, "gelu");
        check(
            "mlp_bias", [](auto& c) { c["mlp_bias"] = true; }, "mlp_bias");
    }

    void missingAndMisshapenTensorsAreNamed() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        const auto config = read_fixture_config();
        {
            auto tensors = read_fixture_tensors();
            tensors.erase("model.layers.1.mlp.up_proj.weight");
            write_model(root / "missing", tensors, config);
            const auto msg = expect_throw<shape_mismatch>([&] { model_weights::load(root / "missing"); });
            QVERIFY2(msg.contains("model.layers.1.mlp.up_proj.weight"), qPrintable(msg));
        }
        {
            auto tensors = read_fixture_tensors();
            auto& k = tensors["model.layers.0.self_attn.k_proj.weight"];
            k.first = {128, 128};
            k.second.resize(128 * 128);
            write_model(root / "shape", tensors, config);
            const auto msg = expect_throw<shape_mismatch>([&] { model_weights::load(root / "shape"); });
            QVERIFY2(msg.contains("model.layers.0.self_attn.k_proj.weight") && msg.contains("[64, 128]"),
                     qPrintable(msg));
        }
        {
            auto c = config;
            c["attention_bias"] = true; // declared biases must be present
            write_model(root / "bias", read_fixture_tensors(), c);
            const auto msg = expect_throw<shape_mismatch>([&] { model_weights::load(root / "bias"); });
            QVERIFY2(msg.contains("q_proj.bias"), qPrintable(msg));
        }
    }

    void qkvBiasesAreApplied() {
        // Declared q/k/v biases (Qwen2 style): zero biases leave the logits as they were, a nonzero one
        // changes them.
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        auto tensors = read_fixture_tensors();
        auto config = read_fixture_config();
        config["attention_bias"] = true;
        for (int l = 0; l < 2; ++l)
            for (const char* m : {"q_proj", "k_proj", "v_proj"}) {
                const std::int64_t d = std::string(m) == "q_proj" ? 128 : 64;
                tensors["model.layers." + std::to_string(l) + ".self_attn." + m + ".bias"] = {
                    {d}, std::vector<float>(std::size_t(d))};
            }
        write_model(root / "zero_bias", tensors, config);
        transformer m(model_weights::load(root / "zero_bias"));
        QVERIFY(!m.weights().layers[1][module_kind::v_proj].bias.empty());
        QVERIFY(max_abs_diff(prefill_logits(m, ref().tokens), ref().logits) < logit_tolerance);
        // A nonzero bias must change the output.
        tensors["model.layers.0.self_attn.v_proj.bias"].second.assign(64, 0.5f);
        write_model(root / "bias", tensors, config);
        transformer b(model_weights::load(root / "bias"));
        QVERIFY(max_abs_diff(prefill_logits(b, ref().tokens), ref().logits) > 1e-3f);
    }

    // ---- The adapter seam ----
    void rawLoraEqualsMergedModel() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        auto base_weights = model_weights::load(model_dir());
        const auto& g = base_weights->geometry();
        RawLoraDelta delta(g);
        auto merged0 = read_fixture_tensors(), merged1 = read_fixture_tensors();
        add_random_adapter(delta, g, 0, 1234, &merged0);
        add_random_adapter(delta, g, 1, 5678, &merged1);
        write_model(root / "merged0", merged0, read_fixture_config());
        write_model(root / "merged1", merged1, read_fixture_config());
        transformer base(base_weights), m0(model_weights::load(root / "merged0")),
            m1(model_weights::load(root / "merged1"));
        const auto& toks = ref().tokens;
        const auto expect0 = prefill_logits(m0, toks), expect1 = prefill_logits(m1, toks);
        const auto got0 = prefill_logits(base, toks, &delta, 0);
        const float diff = max_abs_diff(got0, expect0);
        qInfo("adapter 0 through the seam vs merged model: max diff %.3g (vs base: %.3g)", double(diff),
              double(max_abs_diff(got0, ref().logits)));
        QVERIFY(diff < logit_tolerance);
        QVERIFY(max_abs_diff(got0, ref().logits) > 0.1f); // the adapter really changes the output

        // One batch mixing adapter 0, adapter 1 and the base model, at different positions.
        kv_cache cache = base.make_cache(4u << 20);
        for (int s : {0, 1, 2})
            cache.add_sequence(s);
        const sequence_step warm[2] = {{1, std::span(toks).subspan(0, 10), {}, 1, true},
                                       {2, std::span(toks).subspan(0, 3), {}, -1, true}};
        const auto w = base.forward(cache, warm, &delta);
        const sequence_step mixed[3] = {{0, std::span(toks).subspan(0, 64), {}, 0, true},
                                        {1, std::span(toks).subspan(10, 54), {}, 1, true},
                                        {2, std::span(toks).subspan(3, 61), {}, -1, true}};
        const auto out = base.forward(cache, mixed, &delta);
        auto rows = [&](const step_logits& l, int b) {
            return std::vector<float>(l.values.begin() + std::ptrdiff_t(l.first_row[std::size_t(b)]) * 2048,
                                      l.values.begin() +
                                          std::ptrdiff_t(l.first_row[std::size_t(b) + 1]) * 2048);
        };
        QVERIFY(max_abs_diff(rows(out, 0), expect0) < logit_tolerance);
        auto seq1 = rows(w, 0);
        const auto tail1 = rows(out, 1);
        seq1.insert(seq1.end(), tail1.begin(), tail1.end());
        QVERIFY(max_abs_diff(seq1, expect1) < logit_tolerance);
        auto seq2 = rows(w, 1);
        const auto tail2 = rows(out, 2);
        seq2.insert(seq2.end(), tail2.begin(), tail2.end());
        QVERIFY(max_abs_diff(seq2, ref().logits) < logit_tolerance);
    }

    void loraShapesAreChecked() {
        auto w = model_weights::load(model_dir());
        RawLoraDelta delta(w->geometry());
        lora_module_weights bad;
        bad.rank = 2;
        bad.a.resize(2 * 128);
        bad.b.resize(128 * 2); // k_proj's d_out is 64
        QVERIFY(expect_throw<shape_mismatch>([&] {
                    delta.set_module(0, 0, module_kind::k_proj, bad);
                }).contains("k_proj"));
    }

    // ---- KV cache ----
    void kvCacheRefusesWhatCannotFit() {
        auto w = model_weights::load(model_dir());
        const auto& g = w->geometry();
        const std::uint64_t block = kv_cache::block_bytes(g, 16);
        QCOMPARE(block,
                 std::uint64_t(2 * 2 * 4 * 16 * 16 * 4)); // K+V, layers, kv heads, tokens, head_dim, f32
        kv_cache cache(g, block * 4, 16);                 // 64 tokens in all
        QCOMPARE(cache.total_blocks(), 4);
        cache.add_sequence(1);
        cache.add_sequence(2);
        try {
            cache.reserve(1, 65);
            QFAIL("no exception");
        } catch (const kv_capacity_error& e) {
            QVERIFY(e.permanent());
            QVERIFY2(QString(e.what()).contains("whole cache holds 64"), e.what());
        }
        QVERIFY(cache.try_reserve(1, 40)); // 3 blocks
        QCOMPARE(cache.free_blocks(), 1);
        QVERIFY(!cache.try_reserve(2, 20)); // needs 2, one is free: not now
        QCOMPARE(cache.block_table(2).size(), std::size_t(0));
        try {
            cache.reserve(2, 20);
            QFAIL("no exception");
        } catch (const kv_capacity_error& e) {
            QVERIFY(!e.permanent());
        }
        cache.free_sequence(1);
        QCOMPARE(cache.free_blocks(), 4);
        QVERIFY(cache.try_reserve(2, 20));
        cache.truncate(2, 5);
        QCOMPARE(cache.free_blocks(), 3);
        QVERIFY(
            expect_throw<kv_capacity_error>([&] { kv_cache(g, block - 1, 16); }).contains("holds no block"));

        // Through forward(): a step that does not fit changes nothing.
        transformer model(w);
        kv_cache small = model.make_cache(block * 2, 16); // 32 tokens
        small.add_sequence(0);
        small.add_sequence(1);
        const auto& toks = ref().tokens;
        const sequence_step a{0, std::span(toks).subspan(0, 20), {}, -1, false};
        model.forward(small, std::span(&a, 1));
        const sequence_step both[2] = {{0, std::span(toks).subspan(20, 1), {}, -1, false},
                                       {1, std::span(toks).subspan(0, 20), {}, -1, false}};
        QVERIFY(expect_throw<kv_capacity_error>([&] { model.forward(small, both); }).contains("blocks"));
        QCOMPARE(small.length(0), 20);
        QCOMPARE(small.length(1), 0);
        const sequence_step never{1, std::span(toks).subspan(0, 40), {}, -1, false};
        QVERIFY(expect_throw<kv_capacity_error>([&] {
                    model.forward(small, std::span(&never, 1));
                }).contains("whole cache"));
    }

    // ---- Throughput (printed, not asserted: the machine is shared) ----
    void decodeThroughput() {
        transformer model(model_weights::load(model_dir()));
        for (int batch : {1, 32}) {
            kv_cache cache = model.make_cache(64u << 20);
            std::vector<sequence_step> steps(static_cast<std::size_t>(batch));
            std::vector<int> last(static_cast<std::size_t>(batch));
            for (int b = 0; b < batch; ++b) {
                cache.add_sequence(b);
                steps[std::size_t(b)] = {b, std::span(ref().tokens).subspan(0, 8 + b % 8), {}, -1, false};
            }
            auto out = model.forward(cache, steps);
            const int decode_steps = 128;
            const auto t0 = std::chrono::steady_clock::now();
            const std::clock_t c0 = std::clock();
            for (int i = 0; i < decode_steps; ++i) {
                for (int b = 0; b < batch; ++b) {
                    last[std::size_t(b)] = argmax(out.last(b));
                    steps[std::size_t(b)] = {b, std::span(&last[std::size_t(b)], 1), {}, -1, false};
                }
                out = model.forward(cache, steps);
            }
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const double cpu = double(std::clock() - c0) / CLOCKS_PER_SEC; // all threads of the process
            qInfo("decode batch %d: %.0f tokens/s wall (%.1f us per step), %.0f tokens per CPU-second", batch,
                  batch * decode_steps / s, 1e6 * s / decode_steps, batch * decode_steps / cpu);
        }
    }
};

QTEST_GUILESS_MAIN(TestServeForward)
#include "test_serve_forward.moc"
