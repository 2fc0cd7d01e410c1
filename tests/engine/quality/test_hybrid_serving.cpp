// Hybrid serving (issue 18): a planted fleet (3 exact groups of rank-3 adapters) with 2 adapters from
// unrelated rank-6 subspaces, compressed at rank 3 into 4 clusters: the members have the bank's rank, so a
// group's cluster has no dimension to spare, and the clustering's optimum is the 3 groups plus one cluster
// for the two outliers, which a rank-3 basis fits only partly (with 3 clusters the outliers' best home is
// a group's cluster, bending its basis at the members' expense, so which adapters end up worst would
// depend on that trade rather than on the plant). After an evaluation,
// choose_raw_adapters(below 0.9) picks exactly the two planted outliers; the bank then names them
// (format version 2) and open_bank_provider serves it as a HybridDelta: in one forward step that mixes
// raw-served, compressed and base sequences, every raw-served sequence's logits equal raw serving's (the
// outliers' PEFT folders through CachedLoraDelta) bit for bit, and every compressed one's equal the plain
// bank's (BankDelta) bit for bit, also through generate(). A version-1 bank still serves compressed (and a
// stray "raw_adapters" key in a version-1 manifest is ignored); /metrics and the provider's list say which
// path serves each adapter; memory() adds the raw cache to the bank.
#include "engine/api/prometheus.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/core/error.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/quality/bank_evaluation.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "engine/serve/adapters/hybrid_delta.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/strong_fleet.hpp"
#include "tests/support/test_paths.hpp"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cstring>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

std::shared_ptr<const serve::model_weights> weights() {
    static const auto w = serve::model_weights::load(test::demo_model_dir());
    return w;
}
std::shared_ptr<const serve::Tokenizer> tokenizer() {
    static const std::shared_ptr<const serve::Tokenizer> t = serve::load_tokenizer(test::demo_model_dir());
    return t;
}

std::vector<fs::path> write_fleet(const fs::path& dir, int adapters, int groups, std::uint64_t seed,
                                  int rank) {
    return test::write_strong_fleet(dir, weights()->geometry(), adapters, groups, seed, rank);
}

struct planted {
    fs::path root, bank;
    std::vector<fs::path> dirs; // [11]: 9 members, then the 2 outliers
    std::vector<std::string> names;
};

// The fleet folder holds members and outliers under their final names; the bank records their folders.
planted make_planted(const fs::path& root) {
    planted p;
    p.root = root;
    const auto members = write_fleet(root / "members", 9, 3, 7, 3);
    const auto other = write_fleet(root / "other", 4, 4, 99, 6);
    fs::create_directories(root / "fleet");
    for (int i = 0; i < 9; ++i) {
        p.names.push_back("member-" + std::to_string(i));
        fs::rename(members[std::size_t(i)], root / "fleet" / p.names.back());
    }
    for (int i = 0; i < 2; ++i) {
        p.names.push_back("outlier-" + std::to_string(i));
        fs::rename(other[std::size_t(i + 1)], root / "fleet" / p.names.back());
    }
    io::fleet fleet;
    for (const auto& n : p.names) {
        p.dirs.push_back(root / "fleet" / n);
        fleet.push_back(std::make_shared<const io::peft_adapter>(io::load_peft_adapter(p.dirs.back())));
    }
    compress::compress_options o;
    o.jd.rank = 3;
    o.clusters = 4;
    compress::CpuBackend backend;
    const auto b = bank::compress_adapters_to_bank(fleet, backend, o, weights()->geometry(), 1).bank;
    p.bank = root / "bank";
    bank::write_bank(p.bank, b, {io::dtype::F32, false});
    return p;
}

quality::bank_evaluation_options eval_options() {
    quality::bank_evaluation_options o;
    o.agreement.max_tokens = 16;
    o.agreement.eos = tokenizer()->eos_ids();
    o.agreement.vocab_limit = std::min(weights()->geometry().vocab_size, tokenizer()->vocab_size());
    o.threads = 2;
    return o;
}

std::vector<std::vector<int>> prompts() {
    std::vector<std::vector<int>> out;
    for (const char* t : {"Once upon a time", "The little dog", "She went to the park", "Tom had a red ball",
                          "One day, a bird", "The sun was hot"})
        out.push_back(tokenizer()->encode(t, true));
    return out;
}

// One forward step over `seq_slots` (one sequence per entry, -1 = base), every sequence the same prompt;
// returns each sequence's last logits row.
std::vector<std::vector<float>> step(serve::AdapterProvider* provider, const std::vector<int>& seq_slots) {
    serve::transformer model(weights(), 2);
    auto cache = model.make_cache(64ull << 20);
    const auto prompt = tokenizer()->encode("Once upon a time there was", true);
    std::vector<serve::sequence_step> batch;
    for (std::size_t s = 0; s < seq_slots.size(); ++s) {
        cache.add_sequence(int(s));
        batch.push_back({int(s), prompt, {}, seq_slots[s], false});
    }
    std::vector<int> wanted;
    for (const int s : seq_slots)
        if (s >= 0) wanted.push_back(s);
    if (provider) provider->prepare(wanted);
    const auto logits = model.forward(cache, batch, provider);
    std::vector<std::vector<float>> out;
    for (std::size_t s = 0; s < seq_slots.size(); ++s) {
        const auto row = logits.last(int(s));
        out.emplace_back(row.begin(), row.end());
    }
    return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

} // namespace

class TestHybridServing : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    planted m_fleet;

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        m_fleet = make_planted(fs::path(m_tmp.path().toStdString()));
    }

    void keepRawBelowAgreementPicksThePlantedOutliers() {
        const auto ps = prompts();
        const auto eval = quality::evaluate_bank(m_fleet.bank, weights(), ps, eval_options());
        QCOMPARE(eval.results.size(), std::size_t(11));
        const auto chosen = quality::choose_raw_adapters(eval.section.adapters, 0.9, 0);
        QCOMPARE(chosen, (std::vector<std::string>{"outlier-0", "outlier-1"}));
        // --keep-raw 1: the single worst; 0 and no threshold: none.
        const auto worst = quality::choose_raw_adapters(eval.section.adapters, std::nullopt, 1);
        QCOMPARE(worst.size(), std::size_t(1));
        QVERIFY(worst[0].rfind("outlier-", 0) == 0);
        QVERIFY(quality::choose_raw_adapters(eval.section.adapters, std::nullopt, 0).empty());

        bank::update_bank_manifest(m_fleet.bank, {eval.section, chosen});
        const auto j =
            nlohmann::json::parse(io::read_text_file(m_fleet.bank / "manifest.json", 1 << 24, "m"));
        QCOMPARE(j["version"].get<int>(), 2);
        QCOMPARE(j["raw_adapters"].get<std::vector<std::string>>(), chosen);
        const auto b = bank::read_bank(m_fleet.bank);
        QCOMPARE(b.raw_adapters, chosen);
    }

    void hybridStepEqualsRawAndCompressedBitForBit() {
        auto hybrid = serve::open_bank_provider(m_fleet.bank, weights()->geometry());
        QCOMPARE(hybrid->mode(), std::string_view("hybrid"));
        for (const auto& a : hybrid->list())
            QCOMPARE(a.serving, std::string(a.name.rfind("outlier-", 0) == 0 ? "raw" : "compressed"));
        // References: the bank alone (every adapter compressed) and the outliers alone, raw.
        auto plain = bank::read_bank(m_fleet.bank);
        plain.raw_adapters.clear();
        serve::BankDelta compressed(std::move(plain), weights()->geometry(), "bank");
        serve::CachedLoraDelta raw(weights()->geometry(), 64ull << 20);
        raw.add(m_fleet.dirs[9], "outlier-0");
        raw.add(m_fleet.dirs[10], "outlier-1");

        const int o0 = hybrid->find("outlier-0"), o1 = hybrid->find("outlier-1");
        const int m0 = hybrid->find("member-0"), m5 = hybrid->find("member-5");
        QVERIFY(o0 >= 0 && o1 >= 0 && m0 >= 0 && m5 >= 0);
        const std::vector<int> seq_slots{m0, o0, -1, o1, m5, o0};
        const auto mixed = step(hybrid.get(), seq_slots);
        const auto ref_raw =
            step(&raw, {-1, raw.find("outlier-0"), -1, raw.find("outlier-1"), -1, raw.find("outlier-0")});
        const auto ref_bank =
            step(&compressed, {compressed.find("member-0"), compressed.find("outlier-0"), -1,
                               compressed.find("outlier-1"), compressed.find("member-5"), -1});
        const auto base = step(nullptr, {-1});
        QVERIFY(same_bits(mixed[1], ref_raw[1]));
        QVERIFY(same_bits(mixed[3], ref_raw[3]));
        QVERIFY(same_bits(mixed[5], ref_raw[5]));
        QVERIFY(same_bits(mixed[0], ref_bank[0]));
        QVERIFY(same_bits(mixed[4], ref_bank[4]));
        QVERIFY(same_bits(mixed[2], base[0]));
        // And the compressed form of an outlier is not what hybrid serves (the test can tell them apart).
        QVERIFY(!same_bits(mixed[1], ref_bank[1]));

        // A whole greedy generation of an outlier through the hybrid equals raw serving's.
        serve::transformer model(weights(), 2);
        serve::generation_params gp;
        gp.max_tokens = 24;
        gp.adapter = o1;
        QCOMPARE(hybrid->prepare(std::span<const int>(&o1, 1)), std::size_t(1));
        const auto h = serve::generate(model, *tokenizer(), prompts()[2], gp, {}, hybrid.get());
        gp.adapter = raw.find("outlier-1");
        QCOMPARE(raw.prepare(std::span<const int>(&gp.adapter, 1)), std::size_t(1));
        const auto r = serve::generate(model, *tokenizer(), prompts()[2], gp, {}, &raw);
        QCOMPARE(h.tokens, r.tokens);

        const auto mem = hybrid->memory();
        QCOMPARE(mem.resident_bytes, compressed.memory().resident_bytes + raw.memory().resident_bytes);
    }

    void removingARawAdapterRemovesItEverywhere() {
        auto hybrid = serve::open_bank_provider(m_fleet.bank, weights()->geometry());
        auto* h = dynamic_cast<serve::HybridDelta*>(hybrid.get());
        QVERIFY(h);
        QCOMPARE(h->raw_adapters(), 2);
        QVERIFY(hybrid->remove("outlier-0"));
        QCOMPARE(hybrid->find("outlier-0"), -1);
        QCOMPARE(h->raw_adapters(), 1);
        QVERIFY(!hybrid->remove("outlier-0"));
    }

    void versionOneBankStillServesCompressed() {
        const fs::path copy = m_fleet.root / "bank-v1";
        auto b = bank::read_bank(m_fleet.bank);
        b.raw_adapters.clear();
        bank::write_bank(copy, b, {io::dtype::F32, false});
        auto j = nlohmann::json::parse(io::read_text_file(copy / "manifest.json", 1 << 24, "m"));
        QCOMPARE(j["version"].get<int>(), 1);
        // A version-1 manifest is read by the version-1 rules: a stray raw list means nothing there.
        j["raw_adapters"] = {"outlier-0"};
        io::write_file_atomic(copy / "manifest.json", j.dump(1));
        QVERIFY(bank::read_bank(copy).raw_adapters.empty());
        auto p = serve::open_bank_provider(copy, weights()->geometry());
        QCOMPARE(p->mode(), std::string_view("compressed"));
        QCOMPARE(int(p->list().size()), 11);
        // Emptying the raw list of a version-2 bank makes it version 1 again.
        const fs::path again = m_fleet.root / "bank-again";
        fs::copy(m_fleet.bank, again, fs::copy_options::recursive);
        bank::update_bank_manifest(again, {std::nullopt, std::vector<std::string>{}});
        j = nlohmann::json::parse(io::read_text_file(again / "manifest.json", 1 << 24, "m"));
        QCOMPARE(j["version"].get<int>(), 1);
        QVERIFY(!j.contains("raw_adapters"));
        QVERIFY_THROWS_EXCEPTION(
            usage_error, bank::update_bank_manifest(again, {std::nullopt, std::vector<std::string>{"nope"}}));
    }

    void goneRawSourceIsAClearError() {
        const fs::path moved = m_fleet.root / "moved-outlier";
        fs::rename(m_fleet.dirs[10], moved);
        try {
            (void)serve::open_bank_provider(m_fleet.bank, weights()->geometry());
            QFAIL("a hybrid bank whose raw adapter is gone was opened");
        } catch (const io_error& e) {
            QVERIFY2(std::string(e.what()).find("outlier-1") != std::string::npos, e.what());
        }
        fs::rename(moved, m_fleet.dirs[10]);
    }

    void metricsSayWhichPathServes() {
        api::prometheus_options po;
        po.adapter_mode = "hybrid";
        po.adapters_by_path = {{"compressed", 9}, {"raw", 2}};
        po.raw_adapters = {"outlier-0", "outlier-1"};
        const std::string text = api::render_prometheus(serve::metrics_snapshot{}, po);
        QVERIFY(text.find("lorafleet_adapters_served{path=\"raw\"} 2") != std::string::npos);
        QVERIFY(text.find("lorafleet_adapters_served{path=\"compressed\"} 9") != std::string::npos);
        QVERIFY(text.find("lorafleet_adapter_served_raw{adapter=\"outlier-1\"} 1") != std::string::npos);
    }
};

QTEST_GUILESS_MAIN(TestHybridServing)
#include "test_hybrid_serving.moc"
