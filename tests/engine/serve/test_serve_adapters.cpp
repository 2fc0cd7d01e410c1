// The two adapter providers on the TinyStories-656K demo model:
//  - raw (CachedLoraDelta) logits equal the base model with s·B·A merged into its weights (a rewritten
//    model.safetensors, an independent path through the forward pass);
//  - compressed (BankDelta) logits equal serving the bank's exported PEFT adapters raw, in one step that
//    mixes adapters of both clusters and a base-model sequence (JD-Full and JD-Diag);
//  - a sequence's logits in that mixed step equal its logits run alone, bit for bit, in both modes;
//  - the bank's fused update (pre items and column-block posts, as the forward pass runs it inside its
//    GEMM) equals its apply() bit for bit on every module, leaving base-model rows untouched;
//  - the LRU cache follows a hand-computed trace of hits, misses, evictions and resident set;
//  - runtime add projects an adapter planted in one cluster's subspace onto that cluster with ~0 error and
//    reproduces its raw logits; remove makes the name unknown and generation with the slot refused;
//  - a bank of another geometry, an adapter larger than the cache, unprepared slots: clear errors.
#include "engine/bank/bank_builder.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/bank/peft_export.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/peft_module_source.hpp"
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "engine/io/fleet_loader.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/io/peft_writer.hpp"
#include "engine/io/safetensors.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "engine/synth/synthetic_fleet.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

using namespace lorafleet;
using namespace lorafleet::serve;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> fleet_modules{"q_proj", "v_proj", "o_proj", "down_proj"};

// A random PEFT adapter on `modules` of every layer: A ~ N(0, 1/d_in), B ~ N(0, b_sigma²), F32.
void write_random_adapter(const fs::path& dir, const io::model_geometry& g,
                          const std::vector<std::string>& modules, int rank, double alpha, std::uint64_t seed,
                          double b_sigma = 0.05) {
    io::peft_adapter_spec spec;
    spec.r = rank;
    spec.lora_alpha = alpha;
    spec.base_model = "tinystories-656k";
    spec.target_modules = modules;
    std::vector<std::vector<float>> store;
    store.reserve(std::size_t(g.num_layers) * modules.size() * 2);
    for (int layer = 0; layer < g.num_layers; ++layer)
        for (const auto& name : modules) {
            const auto shape = *g.linear_shape(name);
            auto rs = random_stream::derive(seed, {std::uint64_t(layer), stream_id(name)});
            std::vector<float> a(std::size_t(rank * shape.d_in)), b(std::size_t(shape.d_out * rank));
            for (auto& v : a)
                v = float(rs.normal() / std::sqrt(double(shape.d_in)));
            for (auto& v : b)
                v = float(rs.normal() * b_sigma);
            store.push_back(std::move(a));
            store.push_back(std::move(b));
            const bool mlp = name == "gate_proj" || name == "up_proj" || name == "down_proj";
            const std::string path =
                "model.layers." + std::to_string(layer) + (mlp ? ".mlp." : ".self_attn.") + name;
            spec.modules.push_back(
                {path, rank, shape.d_in, shape.d_out, store[store.size() - 2], store.back()});
        }
    io::write_peft_adapter(dir, spec);
}

// Logits of every position of `tokens` run alone.
std::vector<float> run_alone(transformer& model, std::span<const int> tokens, int slot, AdapterDelta* d) {
    kv_cache cache = model.make_cache(8u << 20);
    cache.add_sequence(0);
    const sequence_step step{0, tokens, {}, slot, true};
    return model.forward(cache, std::span(&step, 1), d).values;
}

struct mixed_sequence {
    std::vector<int> tokens;
    int slot = -1;
};

// One step holding every sequence (all positions' logits); result[b] = sequence b's rows.
std::vector<std::vector<float>> run_mixed(transformer& model, const std::vector<mixed_sequence>& seqs,
                                          AdapterDelta* d) {
    kv_cache cache = model.make_cache(16u << 20);
    std::vector<sequence_step> batch;
    for (std::size_t b = 0; b < seqs.size(); ++b) {
        cache.add_sequence(int(b));
        batch.push_back({int(b), seqs[b].tokens, {}, seqs[b].slot, true});
    }
    const auto out = model.forward(cache, batch, d);
    std::vector<std::vector<float>> rows;
    for (std::size_t b = 0; b < seqs.size(); ++b)
        rows.emplace_back(out.values.begin() + std::ptrdiff_t(out.first_row[b]) * out.vocab,
                          out.values.begin() + std::ptrdiff_t(out.first_row[b + 1]) * out.vocab);
    return rows;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}

double max_abs(const std::vector<float>& a) {
    double m = 0;
    for (float v : a)
        m = std::max(m, std::abs(double(v)));
    return m;
}

std::vector<int> prompt_tokens(int n, std::uint64_t seed) {
    auto rs = random_stream::derive(seed, {99});
    std::vector<int> t{1};
    for (int i = 1; i < n; ++i)
        t.push_back(3 + int(rs.below(2000)));
    return t;
}

// Compresses the adapters under `fleet` into a bank at `out` (stored F32) and returns its folder.
void make_bank(const fs::path& fleet, const fs::path& out, compress::jd_method kind, int rank, int clusters,
               const io::model_geometry& g) {
    io::peft_load_options lo;
    lo.base = &g;
    auto loaded = io::load_fleet({fleet}, lo, 1);
    QVERIFY2(loaded.failures.empty(), loaded.failures.empty() ? "" : loaded.failures[0].reason.c_str());
    const auto& adapters = loaded.adapters;
    compress::PeftModuleSource source(adapters, 1);
    compress::CpuBackend backend({1});
    compress::compress_options opt;
    opt.jd.method = kind;
    opt.jd.rank = rank;
    opt.clusters = clusters;
    const auto result = compress::compress_fleet(source, backend, opt);
    std::vector<bank::adapter_record> records;
    for (const auto& a : adapters)
        records.push_back({a->dir.string(), a->config.base_model_name_or_path, a->max_rank()});
    const auto b = bank::bank_from_result(result, records, g, nlohmann::json::object());
    bank::write_bank(out, b, {io::dtype::F32, false});
}

} // namespace

class TestServeAdapters : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    std::shared_ptr<const model_weights> m_weights;
    std::unique_ptr<transformer> m_model;
    io::model_geometry m_geom;
    fs::path m_fleet, m_bank_full, m_bank_diag, m_export_full, m_export_diag;

    fs::path tmp() const { return fs::path(m_tmp.path().toStdString()); }

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        m_weights = model_weights::load(test::demo_model_dir());
        m_model = std::make_unique<transformer>(m_weights, 1);
        m_geom = m_weights->geometry();
        // A planted fleet of 6 adapters in 2 groups; strong enough (scale 16) to move the logits.
        synth::synth_options so;
        so.out_dir = tmp() / "fleet";
        so.adapters = 6;
        so.geometry = m_geom;
        so.modules = fleet_modules;
        so.rank = 4;
        so.alpha = 64.0;
        so.clusters = 2;
        so.noise = 0.3;
        so.dtype = io::dtype::F32;
        so.seed = 5;
        so.threads = 1;
        synth::write_synthetic_fleet(so);
        m_fleet = so.out_dir;
        m_bank_full = tmp() / "bank-full";
        m_bank_diag = tmp() / "bank-diag";
        make_bank(m_fleet, m_bank_full, compress::jd_method::full, 6, 2, m_geom);
        make_bank(m_fleet, m_bank_diag, compress::jd_method::diag, 8, 2, m_geom);
        m_export_full = tmp() / "export-full";
        m_export_diag = tmp() / "export-diag";
        bank::export_peft_adapters(bank::read_bank(m_bank_full), m_export_full);
        bank::export_peft_adapters(bank::read_bank(m_bank_diag), m_export_diag);
    }

    // 1. Raw serving equals the merged model W + s·B·A (rewritten safetensors, no adapter seam).
    void rawEqualsMergedWeights() {
        const fs::path adapter = tmp() / "raw-one";
        write_random_adapter(adapter, m_geom,
                             {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 4,
                             8.0, 17);
        const auto loaded = io::load_peft_adapter(adapter, {&m_geom});

        // The merged model: every tensor copied, each adapted weight replaced by W + s·B·A (double sums).
        const fs::path merged = tmp() / "merged";
        fs::create_directories(merged);
        fs::copy_file(test::demo_model_dir() / "config.json", merged / "config.json");
        const auto src = io::safetensors_file::open(test::demo_model_dir() / "model.safetensors");
        std::vector<std::vector<float>> values;
        std::vector<std::vector<std::byte>> bytes;
        std::vector<io::tensor_data> tensors;
        values.reserve(src->size());
        bytes.reserve(src->size());
        int replaced = 0;
        for (const auto& t : src->tensors()) {
            auto v = t.to_f32();
            const std::string& name = t.name();
            const std::string suffix = ".weight";
            if (name.size() > suffix.size()) {
                const auto* mod = loaded.find(name.substr(0, name.size() - suffix.size()));
                if (mod) {
                    const auto f = mod->factors_f32();
                    for (std::int64_t i = 0; i < f.d_out; ++i)
                        for (std::int64_t j = 0; j < f.d_in; ++j) {
                            double s = 0;
                            for (int k = 0; k < f.rank; ++k)
                                s += double(f.b[std::size_t(i * f.rank + k)]) *
                                     f.a[std::size_t(k * f.d_in + j)];
                            float& w = v[std::size_t(i * f.d_in + j)];
                            w = float(double(w) + s);
                        }
                    ++replaced;
                }
            }
            values.push_back(std::move(v));
            bytes.push_back(io::encode_f32(values.back(), io::dtype::F32));
            tensors.push_back({name, io::dtype::F32, t.shape(), bytes.back()});
        }
        QCOMPARE(replaced, 7 * m_geom.num_layers);
        io::write_safetensors(merged / "model.safetensors", tensors, src->metadata());
        transformer merged_model(model_weights::load(merged), 1);

        auto provider = open_raw_provider({adapter}, m_geom, 64u << 20);
        const int slot = provider->find("raw-one");
        QCOMPARE(slot, 0);
        QCOMPARE(provider->prepare(std::span(&slot, 1)), std::size_t(1));
        const auto tokens = prompt_tokens(24, 3);
        const auto served = run_alone(*m_model, tokens, slot, provider.get());
        const auto reference = run_alone(merged_model, tokens, -1, nullptr);
        const auto base = run_alone(*m_model, tokens, -1, nullptr);
        const double diff = max_abs_diff(served, reference);
        const double effect = max_abs_diff(base, reference);
        qInfo("raw vs merged: max |diff| %.3g, adapter effect %.3g, max |logit| %.3g", diff, effect,
              max_abs(reference));
        QVERIFY2(effect > 0.5, "the adapter should move the logits visibly");
        QVERIFY2(diff < 1e-4 * std::max(1.0, max_abs(reference)), qPrintable(QString::number(diff)));
    }

    // 2 + 3. Bank serving == raw serving of the exported adapters, in one mixed step; and batch invariance.
    void bankEqualsExportedRaw_data() {
        QTest::addColumn<QString>("kind");
        QTest::newRow("jd-full") << "full";
        QTest::newRow("jd-diag") << "diag";
    }
    void bankEqualsExportedRaw() {
        QFETCH(QString, kind);
        const bool full = kind == "full";
        auto compressed = open_bank_provider(full ? m_bank_full : m_bank_diag, m_geom);
        auto raw = open_raw_provider({full ? m_export_full : m_export_diag}, m_geom, 64u << 20);
        QCOMPARE(compressed->mode(), std::string_view("compressed"));
        QCOMPARE(raw->mode(), std::string_view("raw"));
        const auto infos = compressed->list();
        QCOMPARE(infos.size(), std::size_t(6));
        // Two adapters of each cluster, a base-model sequence between them.
        std::map<int, std::vector<std::string>> by_cluster;
        for (const auto& a : infos)
            by_cluster[a.cluster].push_back(a.name);
        QCOMPARE(by_cluster.size(), std::size_t(2));
        QVERIFY(by_cluster[0].size() >= 2 && by_cluster[1].size() >= 2);
        const std::vector<std::string> names{by_cluster[0][0], by_cluster[1][0], "", by_cluster[0][1],
                                             by_cluster[1][1]};
        std::vector<mixed_sequence> cseqs, rseqs;
        std::vector<int> cslots, rslots;
        for (std::size_t b = 0; b < names.size(); ++b) {
            const auto tokens = prompt_tokens(5 + int(b) * 3, 10 + b);
            const int cs = names[b].empty() ? -1 : compressed->find(names[b]);
            const int rs = names[b].empty() ? -1 : raw->find(names[b]);
            if (!names[b].empty()) {
                QVERIFY(cs >= 0);
                QVERIFY(rs >= 0);
                cslots.push_back(cs);
                rslots.push_back(rs);
            }
            cseqs.push_back({tokens, cs});
            rseqs.push_back({tokens, rs});
        }
        QCOMPARE(compressed->prepare(cslots), cslots.size());
        QCOMPARE(raw->prepare(rslots), rslots.size());
        const auto cout = run_mixed(*m_model, cseqs, compressed.get());
        const auto rout = run_mixed(*m_model, rseqs, raw.get());
        double worst = 0, effect = 0;
        for (std::size_t b = 0; b < names.size(); ++b) {
            const double d = max_abs_diff(cout[b], rout[b]);
            worst = std::max(worst, d);
            QVERIFY2(d < 1e-4 * std::max(1.0, max_abs(rout[b])),
                     qPrintable(QString("sequence %1: %2").arg(b).arg(d)));
            const auto base = run_alone(*m_model, cseqs[b].tokens, -1, nullptr);
            if (names[b].empty())
                QVERIFY(max_abs_diff(cout[b], base) == 0.0); // base tokens untouched, bit for bit
            else
                effect = std::max(effect, max_abs_diff(cout[b], base));
            // 3. Batch invariance: alone == in the mixed step, bit for bit, in both modes.
            const auto calone = run_alone(*m_model, cseqs[b].tokens, cseqs[b].slot, compressed.get());
            const auto ralone = run_alone(*m_model, rseqs[b].tokens, rseqs[b].slot, raw.get());
            QCOMPARE(calone.size(), cout[b].size());
            QVERIFY2(std::memcmp(calone.data(), cout[b].data(), calone.size() * sizeof(float)) == 0,
                     qPrintable(QString("compressed sequence %1 differs alone").arg(b)));
            QVERIFY2(std::memcmp(ralone.data(), rout[b].data(), ralone.size() * sizeof(float)) == 0,
                     qPrintable(QString("raw sequence %1 differs alone").arg(b)));
        }
        qInfo("bank vs exported raw: max |diff| %.3g, adapter effect %.3g", worst, effect);
        QVERIFY2(effect > 0.1, "the adapters should move the logits visibly");
        const auto mem = compressed->memory();
        QCOMPARE(mem.resident_adapters, 6);
        QCOMPARE(mem.capacity_bytes, mem.resident_bytes);
    }

    // 4. The LRU cache on a hand-computed trace (capacity 2.5 adapters of equal size).
    void lruTrace() {
        for (int i = 0; i < 3; ++i)
            write_random_adapter(tmp() / "lru" / ("lru-" + std::to_string(i)), m_geom, {"q_proj", "v_proj"},
                                 4, 8.0, 40 + std::uint64_t(i));
        const std::uint64_t size =
            CachedLoraDelta::resident_bytes_of(io::load_peft_adapter(tmp() / "lru" / "lru-0"));
        // q_proj [128,128] and v_proj [64,128] at r = 4 on 2 layers: 4·(256 + 192)·2 floats.
        QCOMPARE(size, std::uint64_t(4 * (256 + 192) * 2 * 4));
        CachedLoraDelta cache(m_geom, size * 5 / 2);
        const int a = cache.add(tmp() / "lru" / "lru-0", "a").slot;
        const int b = cache.add(tmp() / "lru" / "lru-1", "b").slot;
        const int c = cache.add(tmp() / "lru" / "lru-2", "c").slot;
        QCOMPARE(std::vector<int>({a, b, c}), std::vector<int>({0, 1, 2}));
        auto prep = [&](std::vector<int> s) { return cache.prepare(s); };
        auto resident = [&] {
            std::vector<int> r;
            for (int s : {a, b, c})
                if (cache.is_resident(s)) r.push_back(s);
            return r;
        };
        QCOMPARE(prep({a}), std::size_t(1)); // miss
        QCOMPARE(prep({b}), std::size_t(1)); // miss
        QCOMPARE(prep({a}), std::size_t(1)); // hit
        QCOMPARE(resident(), std::vector<int>({a, b}));
        QCOMPARE(prep({c}), std::size_t(1)); // miss, evicts b (a was used later)
        QCOMPARE(resident(), std::vector<int>({a, c}));
        QCOMPARE(prep({b, a}), std::size_t(2)); // b: miss, evicts a; a: miss, evicts c (b is claimed)
        QCOMPARE(resident(), std::vector<int>({a, b}));
        QCOMPARE(prep({a, b, c}), std::size_t(2)); // hit, hit, c does not fit beside the claimed two
        QCOMPARE(resident(), std::vector<int>({a, b}));
        QCOMPARE(prep({b}), std::size_t(1)); // hit
        QCOMPARE(prep({c}), std::size_t(1)); // miss, evicts a
        QCOMPARE(resident(), std::vector<int>({b, c}));
        const auto m = cache.memory();
        QCOMPARE(m.hits, std::uint64_t(4));
        QCOMPARE(m.misses, std::uint64_t(6));
        QCOMPARE(m.evictions, std::uint64_t(4));
        QCOMPARE(m.resident_adapters, 2);
        QCOMPARE(m.resident_bytes, 2 * size);
        QCOMPARE(m.capacity_bytes, size * 5 / 2);
        // An evicted adapter cannot be applied: the step must have prepared it.
        const auto tokens = prompt_tokens(4, 1);
        QVERIFY_THROWS_EXCEPTION(usage_error, run_alone(*m_model, tokens, a, &cache));
        // A reloaded adapter gives the same logits as before its eviction.
        const auto before = run_alone(*m_model, tokens, c, &cache);
        QCOMPARE(prep({a, b}), std::size_t(2));
        QCOMPARE(prep({c}), std::size_t(1));
        QVERIFY(run_alone(*m_model, tokens, c, &cache) == before);
        // remove() frees the cache and the name.
        QVERIFY(cache.remove("c"));
        QVERIFY(!cache.remove("c"));
        QCOMPARE(cache.find("c"), -1);
        QCOMPARE(cache.memory().resident_bytes, size);
        QVERIFY_THROWS_EXCEPTION(usage_error, cache.prepare(std::vector<int>{c}));
        // The freed slot goes to the next add (lowest free first), which serves its own weights.
        QVERIFY(cache.remove("a"));
        const int d = cache.add(tmp() / "lru" / "lru-2", "d").slot;
        QCOMPARE(d, a);
        const int e = cache.add(tmp() / "lru" / "lru-0", "e").slot;
        QCOMPARE(e, c);
        QCOMPARE(cache.add(tmp() / "lru" / "lru-1", "f").slot, 3);
        QCOMPARE(prep({d}), std::size_t(1));
        QVERIFY(run_alone(*m_model, tokens, d, &cache) == before); // lru-2's logits, as c had them
    }

    // 5. Runtime add (planted in one cluster's subspace) and remove, compressed mode.
    void addPlantedAndRemove() {
        auto provider = open_bank_provider(m_bank_full, m_geom);
        const auto b = bank::read_bank(m_bank_full);
        const int r = b.rank, rn = 3, planted = 1;
        // A = C·V_cᵀ [rn, d_in], B = U_c·D [d_out, rn]: ΔW = s·U_c (D C) V_cᵀ lies in cluster 1's span.
        io::peft_adapter_spec spec;
        spec.r = rn;
        spec.lora_alpha = 2.0 * rn; // scale 2
        spec.target_modules = fleet_modules;
        std::vector<std::vector<float>> store;
        store.reserve(b.modules.size() * 2);
        auto rs = random_stream::derive(77, {});
        for (std::size_t m = 0; m < b.modules.size(); ++m) {
            const auto& mod = b.modules[m];
            const auto& basis = b.bases[m][planted];
            QVERIFY(!basis.empty());
            std::vector<double> C(std::size_t(rn * r)), D(std::size_t(r * rn));
            for (auto& v : C)
                v = rs.normal() / std::sqrt(double(r));
            for (auto& v : D)
                v = rs.normal() * 0.5;
            std::vector<float> A(std::size_t(rn * mod.d_in)), B(std::size_t(mod.d_out * rn));
            for (int i = 0; i < rn; ++i)
                for (std::int64_t j = 0; j < mod.d_in; ++j) {
                    double s = 0;
                    for (int k = 0; k < r; ++k)
                        s += C[std::size_t(i * r + k)] * basis.vt[std::size_t(k * mod.d_in + j)];
                    A[std::size_t(i * mod.d_in + j)] = float(s);
                }
            for (std::int64_t i = 0; i < mod.d_out; ++i)
                for (int j = 0; j < rn; ++j) {
                    double s = 0;
                    for (int k = 0; k < r; ++k)
                        s += basis.u[std::size_t(i * r + k)] * D[std::size_t(k * rn + j)];
                    B[std::size_t(i * rn + j)] = float(s);
                }
            store.push_back(std::move(A));
            store.push_back(std::move(B));
            spec.modules.push_back(
                {mod.path, rn, mod.d_in, mod.d_out, store[store.size() - 2], store.back()});
        }
        const fs::path dir = tmp() / "planted";
        io::write_peft_adapter(dir, spec);

        const auto info = provider->add(dir, "planted");
        QCOMPARE(info.cluster, planted);
        QVERIFY2(info.error < 1e-6, qPrintable(QString::number(info.error)));
        QCOMPARE(provider->find("planted"), info.slot);
        QCOMPARE(provider->list().size(), std::size_t(7));
        QVERIFY_THROWS_EXCEPTION(usage_error, provider->add(dir, "planted")); // name taken

        auto raw = open_raw_provider({dir}, m_geom, 16u << 20);
        const int rslot = raw->find("planted");
        QCOMPARE(raw->prepare(std::span(&rslot, 1)), std::size_t(1));
        const int slot = info.slot;
        QCOMPARE(provider->prepare(std::span(&slot, 1)), std::size_t(1));
        const auto tokens = prompt_tokens(16, 8);
        const auto got = run_alone(*m_model, tokens, slot, provider.get());
        const auto want = run_alone(*m_model, tokens, rslot, raw.get());
        const auto base = run_alone(*m_model, tokens, -1, nullptr);
        const double diff = max_abs_diff(got, want);
        qInfo("planted add: error %.3g, bank vs raw max |diff| %.3g, effect %.3g", info.error, diff,
              max_abs_diff(want, base));
        QVERIFY(max_abs_diff(want, base) > 0.1);
        QVERIFY2(diff < 1e-4 * std::max(1.0, max_abs(want)), qPrintable(QString::number(diff)));

        const auto bytes_before = provider->memory().resident_bytes;
        QVERIFY(provider->remove("planted"));
        QVERIFY(!provider->remove("planted"));
        QCOMPARE(provider->find("planted"), -1);
        QCOMPARE(provider->list().size(), std::size_t(6));
        QCOMPARE(provider->memory().resident_bytes, bytes_before - info.bytes);
        QVERIFY_THROWS_EXCEPTION(usage_error, provider->prepare(std::span(&slot, 1)));
        const auto tokenizer = load_tokenizer(test::demo_model_dir());
        generation_params params;
        params.max_tokens = 4;
        params.adapter = slot;
        QVERIFY_THROWS_EXCEPTION(usage_error,
                                 generate(*m_model, *tokenizer, tokens, params, {}, provider.get()));
        // The other adapters keep serving.
        const int other = provider->find(provider->list().front().name);
        QVERIFY(other >= 0 && other != slot);
        QCOMPARE(provider->prepare(std::span(&other, 1)), std::size_t(1));
        run_alone(*m_model, tokens, other, provider.get());

        // Adding again reuses the freed slot and serves exactly what the first add served; the slot count
        // stays put over add/remove cycles.
        for (int cycle = 0; cycle < 3; ++cycle) {
            const auto again = provider->add(dir, "planted-" + std::to_string(cycle));
            QCOMPARE(again.slot, slot);
            QCOMPARE(provider->list().size(), std::size_t(7));
            QCOMPARE(provider->prepare(std::span(&slot, 1)), std::size_t(1));
            QCOMPARE(max_abs_diff(run_alone(*m_model, tokens, slot, provider.get()), got), 0.0);
            QVERIFY(provider->remove(again.name));
        }
    }

    // 6. Bad input.
    void fusedUpdateEqualsApply() {
        auto bank = open_bank_provider(m_bank_full, m_geom);
        const auto infos = bank->list();
        QVERIFY(infos.size() >= 4);
        const std::vector<int> token_slot{infos[0].slot, -1, infos[1].slot, infos[2].slot, infos[0].slot,
                                          infos[3].slot, -1, infos[1].slot};
        std::vector<int> live;
        for (const int s : token_slot)
            if (s >= 0) live.push_back(s);
        QCOMPARE(bank->prepare(live), live.size());
        const int n = int(token_slot.size());
        std::mt19937_64 rng(7);
        std::normal_distribution<float> g(0.0f, 1.0f);
        int modules = 0;
        for (int layer = 0; layer < m_geom.num_layers; ++layer)
            for (int k = 0; k < module_kind_count; ++k) {
                const auto kind = static_cast<module_kind>(k);
                const auto shape = m_geom.linear_shape(std::string(module_name(kind)));
                QVERIFY(shape.has_value());
                const int d_in = int(shape->d_in), d_out = int(shape->d_out);
                std::vector<float> x(std::size_t(n) * d_in), y0(std::size_t(n) * d_out);
                for (auto& v : x)
                    v = g(rng);
                for (auto& v : y0)
                    v = g(rng);
                std::vector<float> applied = y0, fused_y = y0;
                bank->apply(layer, kind, x.data(), applied.data(), n, token_slot, nullptr);
                fused_delta fused;
                QVERIFY(bank->fuse(layer, kind, x.data(), fused_y.data(), n, token_slot, 2, fused));
                for (std::size_t i = fused.pre_items; i-- > 0;) // any order, any worker
                    bank->fused_pre(i, int(i % 2));
                for (int j0 = (d_out - 1) / 48 * 48; j0 >= 0; j0 -= 48)
                    bank->fused_post(j0, std::min(d_out, j0 + 48), j0 / 48 % 2);
                QVERIFY2(std::memcmp(applied.data(), fused_y.data(), applied.size() * sizeof(float)) == 0,
                         qPrintable(QString("layer %1 %2").arg(layer).arg(module_name(kind).data())));
                // Modules the fleet does not adapt are left alone; the others move every adapter row.
                const bool adapted = std::find(fleet_modules.begin(), fleet_modules.end(),
                                               std::string(module_name(kind))) != fleet_modules.end();
                double moved = 0;
                for (int t = 0; t < n; ++t)
                    for (int o = 0; o < d_out; ++o) {
                        const std::size_t i = std::size_t(t) * d_out + std::size_t(o);
                        if (token_slot[std::size_t(t)] < 0 || !adapted)
                            QCOMPARE(fused_y[i], y0[i]);
                        else
                            moved = std::max(moved, double(std::abs(fused_y[i] - y0[i])));
                    }
                QVERIFY2(!adapted || moved > 0, "the adapters should change their rows");
                modules += adapted;
            }
        QCOMPARE(modules, int(fleet_modules.size()) * m_geom.num_layers);
    }

    void bankOfAnotherGeometryIsRefused() {
        const fs::path dir = tmp() / "foreign-bank";
        bank::write_bank(dir, test::make_random_bank(compress::jd_method::full, 3));
        try {
            open_bank_provider(dir, m_geom);
            QFAIL("a bank of another geometry was accepted");
        } catch (const shape_mismatch& e) {
            QVERIFY2(QString(e.what()).contains("model.layers.0.self_attn.q_proj"), e.what());
        }
    }

    void adapterLargerThanCacheIsRefused() {
        const fs::path dir = tmp() / "big";
        write_random_adapter(dir, m_geom, {"q_proj"}, 8, 16.0, 3);
        const auto need = CachedLoraDelta::resident_bytes_of(io::load_peft_adapter(dir));
        try {
            open_raw_provider({dir}, m_geom, need - 1);
            QFAIL("an adapter larger than the cache was accepted");
        } catch (const validation_error& e) {
            QVERIFY2(QString(e.what()).contains("big") && QString(e.what()).contains("cache"), e.what());
        }
        QCOMPARE(open_raw_provider({dir}, m_geom, need)->list().size(), std::size_t(1));
    }

    void rawAdapterOfAnotherModelIsRefused() {
        const fs::path dir = tmp() / "foreign-adapter";
        auto other = m_geom;
        other.hidden_size = 256;
        other.head_dim = 32;
        write_random_adapter(dir, other, {"q_proj"}, 4, 8.0, 3);
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, open_raw_provider({dir}, m_geom, 64u << 20));
        auto provider = open_bank_provider(m_bank_full, m_geom);
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, provider->add(dir, "foreign"));
        QCOMPARE(provider->list().size(), std::size_t(6));
    }

    void duplicateFolderNamesAreRefused() {
        write_random_adapter(tmp() / "dup1" / "same", m_geom, {"q_proj"}, 2, 4.0, 1);
        write_random_adapter(tmp() / "dup2" / "same", m_geom, {"q_proj"}, 2, 4.0, 2);
        QVERIFY_THROWS_EXCEPTION(usage_error,
                                 open_raw_provider({tmp() / "dup1", tmp() / "dup2"}, m_geom, 64u << 20));
    }
};

QTEST_GUILESS_MAIN(TestServeAdapters)
#include "test_serve_adapters.moc"
