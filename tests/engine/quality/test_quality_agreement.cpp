// evaluate_agreement (engine/quality/agreement.hpp) on the demo model (TinyStories-656K) with synthetic PEFT
// fleets whose planted structure is exact (noise 0): (a) a bank at the planted rank reconstructs every
// adapter exactly, so compressed vs raw agree on every token (exact match 1, KL ~ 0) — while the same
// adapters do change the base model's output, so agreement is not trivially 1; (b) a planted adapter from
// an unrelated subspace, squeezed into a cluster whose basis cannot hold it, agrees less than every other
// adapter (which stay exact); (c) the raw half is exactly `generate` with the raw adapter (batch-invariant
// forward), and results do not depend on how many adapters share a step.
#include "engine/bank/fleet_bank.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/core/error.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/quality/agreement.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/strong_fleet.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

struct model_fixture {
    std::shared_ptr<const serve::model_weights> weights;
    std::shared_ptr<const serve::Tokenizer> tokenizer;
};

const model_fixture& model() {
    static const model_fixture f{serve::model_weights::load(test::demo_model_dir()),
                                 serve::load_tokenizer(test::demo_model_dir())};
    return f;
}

// `adapters` rank-2 adapters in `groups` exact planted groups (noise 0) with a large scale, so they change
// greedy outputs of the tiny model.
std::vector<fs::path> write_fleet(const fs::path& dir, int adapters, int groups, std::uint64_t seed,
                                  int rank = 2) {
    return test::write_strong_fleet(dir, model().weights->geometry(), adapters, groups, seed, rank);
}

// The adapters under the given names, compressed at `rank` into `clusters` clusters (float32 in memory).
bank::compressed_bank compress_fleet(const std::vector<fs::path>& dirs, const std::vector<std::string>& names,
                                     int rank, int clusters) {
    io::fleet fleet;
    for (std::size_t i = 0; i < dirs.size(); ++i) {
        auto a = io::load_peft_adapter(dirs[i]);
        a.name = names[i];
        fleet.push_back(std::make_shared<const io::peft_adapter>(std::move(a)));
    }
    compress::compress_options o;
    o.jd.rank = rank;
    o.clusters = clusters;
    compress::CpuBackend backend;
    return bank::compress_adapters_to_bank(fleet, backend, o, model().weights->geometry(), 1).bank;
}

std::unique_ptr<serve::CachedLoraDelta> raw_provider(const std::vector<fs::path>& dirs,
                                                     const std::vector<std::string>& names) {
    auto p = std::make_unique<serve::CachedLoraDelta>(model().weights->geometry(), 64ull << 20);
    for (std::size_t i = 0; i < dirs.size(); ++i)
        p->add(dirs[i], names[i]);
    return p;
}

std::vector<std::vector<int>> prompts(int count) {
    const char* texts[] = {"Once upon a time",   "The little dog",  "She went to the park",
                           "Tom had a red ball", "One day, a bird", "The sun was hot"};
    std::vector<std::vector<int>> out;
    for (int i = 0; i < count; ++i)
        out.push_back(model().tokenizer->encode(texts[i % 6], true));
    return out;
}

quality::agreement_options options(int max_tokens, int batch) {
    quality::agreement_options o;
    o.max_tokens = max_tokens;
    o.batch_sequences = batch;
    o.prefill_sequences = 5;
    o.eos = model().tokenizer->eos_ids();
    o.vocab_limit = std::min(model().weights->geometry().vocab_size, model().tokenizer->vocab_size());
    return o;
}

std::vector<std::string> names_of(int n, const char* prefix) {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i)
        out.push_back(std::string(prefix) + std::to_string(i));
    return out;
}

} // namespace

class TestQualityAgreement : public QObject {
    Q_OBJECT
private slots:
    // (a) Exact rank: the compressed adapter is the raw one up to float rounding.
    void exactBankAgreesEverywhere() {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const auto dirs = write_fleet(fs::path(tmp.path().toStdString()) / "fleet", 4, 1, 5);
        const auto names = names_of(4, "a");
        auto bank = compress_fleet(dirs, names, 2, 1);
        QVERIFY(bank.max_error() < 1e-8);
        serve::BankDelta compressed(std::move(bank), model().weights->geometry(), "bank");
        auto raw = raw_provider(dirs, names);
        serve::transformer pass_model(model().weights, 2);
        auto pass = serve::make_forward_pass(serve::device_choice::cpu, model().weights, 2, nullptr);
        const auto ps = prompts(6);
        const auto r = quality::evaluate_agreement(*pass.pass, *raw, *pass.pass, compressed, names, ps,
                                                   *model().weights, options(12, 12));
        QCOMPARE(int(r.size()), 4);
        for (const auto& a : r) {
            QCOMPARE(a.quality.prompts, 6);
            QVERIFY(a.quality.tokens >= 6);
            QCOMPARE(a.quality.exact_matches, 6);
            QCOMPARE(a.quality.agreeing_tokens, a.quality.tokens);
            QCOMPARE(a.quality.first_divergence, -1);
            QVERIFY2(a.quality.mean_kl < 1e-6, std::to_string(a.quality.mean_kl).c_str());
            QVERIFY(a.quality.mean_first_divergence > 0);
        }

        // Not trivially 1: the adapters change the base model's greedy output (compared with generate()).
        serve::generation_params gp;
        gp.max_tokens = 12;
        const auto base = serve::generate(pass_model, *model().tokenizer, ps[0], gp);
        int differing = 0;
        for (int i = 0; i < 4; ++i) {
            gp.adapter = raw->find(names[std::size_t(i)]);
            const int slot = gp.adapter;
            QCOMPARE(raw->prepare(std::span<const int>(&slot, 1)), std::size_t(1));
            const auto with = serve::generate(pass_model, *model().tokenizer, ps[0], gp, {}, raw.get());
            if (with.tokens != base.tokens) ++differing;
        }
        QVERIFY2(differing >= 3, std::to_string(differing).c_str());
    }

    // (b) A planted outlier from another subspace, in a rank-3 bank with one cluster per planted group.
    void plantedOutlierScoresLowest() {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const fs::path root(tmp.path().toStdString());
        auto dirs = write_fleet(root / "fleet", 9, 3, 7);
        const auto other = write_fleet(root / "other", 4, 4, 99, 6); // unrelated subspaces, rank 6
        dirs.push_back(other[3]);
        auto names = names_of(9, "member-");
        names.push_back("outlier");
        // Rank 3: each cluster's basis holds its planted group's 2 dimensions exactly, and has one to spare
        // for whatever else it holds: never enough for a rank-6 adapter from elsewhere.
        auto bank = compress_fleet(dirs, names, 3, 3);
        const int outlier = 9;
        QVERIFY2(bank.adapters[outlier].mean_error() > 0.2,
                 std::to_string(bank.adapters[outlier].mean_error()).c_str());
        for (int i = 0; i < 9; ++i)
            QVERIFY2(bank.adapters[std::size_t(i)].mean_error() < 1e-6,
                     (std::to_string(i) + ": " + std::to_string(bank.adapters[std::size_t(i)].mean_error()) +
                      " cluster " + std::to_string(bank.adapters[std::size_t(i)].cluster) +
                      " outlier cluster " + std::to_string(bank.adapters[outlier].cluster))
                         .c_str());
        serve::BankDelta compressed(std::move(bank), model().weights->geometry(), "bank");
        auto raw = raw_provider(dirs, names);
        auto pass = serve::make_forward_pass(serve::device_choice::cpu, model().weights, 2, nullptr);
        const auto ps = prompts(6);
        const auto r = quality::evaluate_agreement(*pass.pass, *raw, *pass.pass, compressed, names, ps,
                                                   *model().weights, options(16, 18));
        const auto& q = r[outlier].quality;
        QVERIFY2(q.token_agreement() < 0.9, std::to_string(q.token_agreement()).c_str());
        QVERIFY(q.mean_kl > 1e-3);
        QVERIFY(q.first_divergence >= 0);
        for (int i = 0; i < 9; ++i) {
            QCOMPARE(r[std::size_t(i)].quality.token_agreement(), 1.0);
            QVERIFY(r[std::size_t(i)].quality.mean_kl < q.mean_kl / 100);
        }

        // (c) The same numbers with one adapter per step (batch 1 sequence -> groups of one adapter) and
        // with every adapter in one step: the forward pass is batch-invariant.
        const auto one = quality::evaluate_agreement(*pass.pass, *raw, *pass.pass, compressed, names, ps,
                                                     *model().weights, options(16, 1));
        const auto all = quality::evaluate_agreement(*pass.pass, *raw, *pass.pass, compressed, names, ps,
                                                     *model().weights, options(16, 1000));
        for (std::size_t i = 0; i < r.size(); ++i) {
            QCOMPARE(one[i].quality.agreeing_tokens, r[i].quality.agreeing_tokens);
            QCOMPARE(all[i].quality.tokens, r[i].quality.tokens);
            QCOMPARE(one[i].quality.mean_kl, r[i].quality.mean_kl);
            QCOMPARE(all[i].quality.mean_kl, r[i].quality.mean_kl);
        }
    }

    // (c) The raw half generates exactly what generate() gives with the raw adapter: a bank whose only
    // adapter is another one's (names swapped) disagrees exactly where the two raw adapters' outputs differ.
    void rawTokensAreGenerateOutput() {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const auto dirs = write_fleet(fs::path(tmp.path().toStdString()) / "fleet", 2, 2, 13);
        // Bank: "x" is adapter 1 compressed exactly; raw "x" is adapter 0.
        auto bank = compress_fleet({dirs[1]}, {"x"}, 2, 1);
        serve::BankDelta compressed(std::move(bank), model().weights->geometry(), "bank");
        auto raw = raw_provider({dirs[0]}, {"x"});
        auto raw1 = raw_provider({dirs[1]}, {"x"});
        serve::transformer m(model().weights, 2);
        auto pass = serve::make_forward_pass(serve::device_choice::cpu, model().weights, 2, nullptr);
        const auto ps = prompts(1);
        const std::vector<std::string> names{"x"};
        auto o = options(20, 8);
        o.eos.clear(); // as generate() with stop_at_eos = false below
        const auto r = quality::evaluate_agreement(*pass.pass, *raw, *pass.pass, compressed, names, ps,
                                                   *model().weights, o);
        // Independent expectation from generate(): the raw tokens of adapter 0, then adapter 1 teacher-forced
        // on them is generate() of adapter 1 only up to the first difference.
        serve::generation_params gp;
        gp.max_tokens = 20;
        gp.stop_at_eos = false;
        gp.adapter = 0;
        int slot = 0;
        raw->prepare(std::span<const int>(&slot, 1));
        raw1->prepare(std::span<const int>(&slot, 1));
        const auto g0 = serve::generate(m, *model().tokenizer, ps[0], gp, {}, raw.get());
        const auto g1 = serve::generate(m, *model().tokenizer, ps[0], gp, {}, raw1.get());
        int first = -1;
        for (std::size_t k = 0; k < g0.tokens.size() && k < g1.tokens.size(); ++k)
            if (g0.tokens[k] != g1.tokens[k]) {
                first = int(k);
                break;
            }
        QVERIFY2(first >= 0, "the two adapters should differ on this prompt");
        QCOMPARE(r[0].quality.first_divergence, first);
        QCOMPARE(r[0].quality.exact_matches, 0);
    }

    void badInputIsAClearError() {
        auto pass = serve::make_forward_pass(serve::device_choice::cpu, model().weights, 1, nullptr);
        serve::CachedLoraDelta raw(model().weights->geometry(), 1 << 20);
        serve::CachedLoraDelta other(model().weights->geometry(), 1 << 20);
        const std::vector<std::string> names{"missing"};
        const auto ps = prompts(1);
        QVERIFY_THROWS_EXCEPTION(usage_error,
                                 quality::evaluate_agreement(*pass.pass, raw, *pass.pass, other, names, ps,
                                                             *model().weights, options(4, 4)));
        QVERIFY_THROWS_EXCEPTION(usage_error,
                                 quality::evaluate_agreement(*pass.pass, raw, *pass.pass, other, {}, ps,
                                                             *model().weights, options(0, 4)));
        QVERIFY_THROWS_EXCEPTION(usage_error,
                                 quality::evaluate_agreement(*pass.pass, raw, *pass.pass, other, {}, {},
                                                             *model().weights, options(4, 4)));
    }
};

QTEST_GUILESS_MAIN(TestQualityAgreement)
#include "test_quality_agreement.moc"
