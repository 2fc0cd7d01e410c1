// serve sampler: greedy tie-breaking, determinism for a seed, top-k = 1 and tiny top-p reduce to greedy,
// top-k / top-p never pick outside their sets, frequencies follow the softmax, and generation with a seed
// is reproducible end to end on the fixture model (and differs between seeds).
#include "engine/core/error.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/scheduling/sampler.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <array>
#include <cmath>
#include <numeric>
#include <set>

using namespace lorafleet;
using namespace lorafleet::serve;

namespace {

std::vector<float> random_logits(std::uint64_t seed, int n) {
    random_stream rng(seed);
    std::vector<float> v(static_cast<std::size_t>(n));
    for (auto& x : v)
        x = float(rng.normal() * 3.0);
    return v;
}

sampling_params params(float temperature, int top_k, float top_p, std::uint64_t seed) {
    sampling_params p;
    p.temperature = temperature;
    p.top_k = top_k;
    p.top_p = top_p;
    p.seed = seed;
    return p;
}

} // namespace

class TestServeSampler : public QObject {
    Q_OBJECT
private slots:
    void greedyTakesTheLowestIdOnTies() {
        const std::vector<float> l = {1.0f, 3.0f, NAN, 3.0f, -INFINITY};
        QCOMPARE(greedy_token(l), 1);
        sampler s(params(0.0f, 0, 1.0f, 1));
        QCOMPARE(s.sample(l), 1);
        const std::vector<float> none = {NAN, -INFINITY};
        QVERIFY_THROWS_EXCEPTION(validation_error, greedy_token(none));
    }

    void sameSeedSameDraws() {
        const auto l = random_logits(7, 500);
        sampler a(params(0.8f, 40, 0.95f, 42)), b(params(0.8f, 40, 0.95f, 42)),
            c(params(0.8f, 40, 0.95f, 43));
        std::vector<int> da, db, dc;
        for (int i = 0; i < 200; ++i) {
            da.push_back(a.sample(l));
            db.push_back(b.sample(l));
            dc.push_back(c.sample(l));
        }
        QCOMPARE(da, db);
        QVERIFY(da != dc);
    }

    void topKOneAndTinyTopPAreGreedy() {
        for (std::uint64_t seed = 0; seed < 20; ++seed) {
            const auto l = random_logits(seed, 300);
            sampler k1(params(1.5f, 1, 1.0f, seed)), p0(params(1.5f, 0, 1e-6f, seed));
            QCOMPARE(k1.sample(l), greedy_token(l));
            QCOMPARE(p0.sample(l), greedy_token(l));
        }
    }

    void topKAndTopPStayInTheirSets() {
        const auto l = random_logits(3, 100);
        std::vector<int> order(100);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(),
                  [&](int a, int b) { return l[std::size_t(a)] > l[std::size_t(b)]; });
        const std::set<int> top5(order.begin(), order.begin() + 5);
        sampler k(params(5.0f, 5, 1.0f, 9));
        for (int i = 0; i < 500; ++i)
            QVERIFY(top5.count(k.sample(l)));
        // Nucleus 0.5 at temperature 1: the smallest prefix of `order` whose probability reaches 0.5.
        double z = 0;
        for (float x : l)
            z += std::exp(double(x));
        std::set<int> nucleus;
        double mass = 0;
        for (int id : order) {
            nucleus.insert(id);
            mass += std::exp(double(l[std::size_t(id)])) / z;
            if (mass >= 0.5) break;
        }
        sampler p(params(1.0f, 0, 0.5f, 9));
        for (int i = 0; i < 500; ++i)
            QVERIFY(nucleus.count(p.sample(l)));
    }

    void frequenciesFollowTheSoftmax() {
        const std::vector<float> l = {0.0f, std::log(2.0f), std::log(5.0f)}; // probabilities 1/8, 2/8, 5/8
        sampler s(params(1.0f, 0, 1.0f, 2024));
        std::array<int, 3> count{};
        const int n = 40000;
        for (int i = 0; i < n; ++i)
            ++count[std::size_t(s.sample(l))];
        QVERIFY(std::abs(count[0] / double(n) - 0.125) < 0.01);
        QVERIFY(std::abs(count[1] / double(n) - 0.25) < 0.01);
        QVERIFY(std::abs(count[2] / double(n) - 0.625) < 0.01);
        // Temperature 0.5 squares the odds: 1 : 4 : 25.
        sampler t(params(0.5f, 0, 1.0f, 2025));
        count = {};
        for (int i = 0; i < n; ++i)
            ++count[std::size_t(t.sample(l))];
        QVERIFY(std::abs(count[2] / double(n) - 25.0 / 30.0) < 0.01);
    }

    void badParametersAreRefused() {
        QVERIFY_THROWS_EXCEPTION(usage_error, sampler(params(-1.0f, 0, 1.0f, 0)));
        QVERIFY_THROWS_EXCEPTION(usage_error, sampler(params(1.0f, -2, 1.0f, 0)));
        QVERIFY_THROWS_EXCEPTION(usage_error, sampler(params(1.0f, 0, 0.0f, 0)));
        QVERIFY_THROWS_EXCEPTION(usage_error, sampler(params(1.0f, 0, 1.5f, 0)));
    }

    void seededGenerationIsReproducible() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto dir = test::fixtures_dir() / "models/tinystories-656k";
        transformer model(model_weights::load(dir));
        const auto tok = load_tokenizer(dir);
        const auto prompt = tok->encode("Once upon a time", true);
        generation_params p;
        p.max_tokens = 40;
        p.sampling = params(1.0f, 50, 0.9f, 11);
        std::string streamed;
        const auto a = generate(model, *tok, prompt, p, [&](std::string_view s) { streamed += s; });
        const auto b = generate(model, *tok, prompt, p);
        QCOMPARE(a.tokens, b.tokens);
        QCOMPARE(a.text, b.text);
        QCOMPARE(streamed, a.text);
        QCOMPARE(a.text, tok->decode(a.tokens));
        p.sampling.seed = 12;
        QVERIFY(generate(model, *tok, prompt, p).tokens != a.tokens);
        // top-k = 1 at any temperature is the greedy run.
        p.sampling = params(2.0f, 1, 1.0f, 5);
        generation_params g;
        g.max_tokens = 40;
        QCOMPARE(generate(model, *tok, prompt, p).tokens, generate(model, *tok, prompt, g).tokens);
        // A stop string cuts the text before it.
        g.stop = {"Lily"};
        const auto s = generate(model, *tok, std::vector<int>{1}, g);
        QCOMPARE(s.reason, finish_reason::stop_string);
        QCOMPARE(s.text, std::string("Once upon a time, there was a little girl named "));
    }
};

QTEST_GUILESS_MAIN(TestServeSampler)
#include "test_serve_sampler.moc"
