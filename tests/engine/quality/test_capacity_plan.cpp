// The capacity plan's arithmetic (engine/quality/capacity_plan.hpp) against hand-computed values: the
// step-time model interpolates between measured batches and extends the last segment; what fits in a
// budget (raw adapters, compressed cores, KV left, concurrent sequences) on the demo model; the predicted
// tokens/s per mode including prefill and raw cache misses (steady state and a cold run); the bank's and
// a raw fleet's bytes; and the step-time cache: measured once, then read back, re-measured on request,
// and a damaged cache file re-measured rather than trusted.
#include "engine/io/atomic_file.hpp"
#include "engine/quality/capacity_plan.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;

namespace {

std::shared_ptr<const serve::model_weights> weights() {
    static const auto w = serve::model_weights::load(test::demo_model_dir());
    return w;
}

quality::step_times sample_times() {
    quality::step_times t;
    t.decode_s = {{1, 1e-3}, {8, 2e-3}, {32, 5e-3}, {64, 9e-3}};
    t.prefill_per_token_s = 1e-5;
    t.load_s = 4e-3;
    return t;
}

} // namespace

class TestCapacityPlan : public QObject {
    Q_OBJECT
private slots:
    void stepModelInterpolates() {
        const auto t = sample_times();
        QCOMPARE(t.step_seconds(8, 0), 2e-3);
        QVERIFY(std::abs(t.step_seconds(16, 0) - (2e-3 + 8.0 / 24.0 * 3e-3)) < 1e-12);
        QVERIFY(std::abs(t.step_seconds(128, 0) - (9e-3 + 64.0 * 4e-3 / 32.0)) < 1e-12);
        QVERIFY(std::abs(t.step_seconds(64, 100) - (9e-3 + 100 * 1e-5)) < 1e-12);
        QCOMPARE(t.step_seconds(1, 0), 1e-3);
    }

    void planArithmetic() {
        quality::fleet_bytes f;
        f.adapters = 1000;
        f.raw_mean = 1 << 20;
        f.raw_max = 1 << 20;
        f.has_bank = true;
        f.bank_bases = 10 << 20;
        f.bank_core = 4096;
        quality::step_model steps;
        steps.modes["base"] = sample_times();
        steps.modes["raw"] = sample_times();
        quality::plan_options o;
        o.memory_bytes = 100ull << 20;
        o.concurrency = 32;
        o.prompt_tokens = 16;
        o.generated_tokens = 32;
        const auto p = quality::make_plan(*weights(), f, steps, o);
        const auto& g = weights()->geometry();
        QCOMPARE(p.kv_bytes_per_token, std::uint64_t(2 * g.num_layers * g.num_kv_heads * g.head_dim * 4));
        QCOMPARE(p.weight_bytes, weights()->parameter_bytes());
        const std::uint64_t beside = (100ull << 20) - p.weight_bytes;
        QCOMPARE(p.raw_adapters_resident, std::int64_t(beside >> 20));
        QCOMPARE(p.compressed_adapters_resident, std::int64_t((beside - (10 << 20)) / 4096));
        const std::uint64_t kv_left = beside - (10 << 20) - 1000 * 4096;
        QCOMPARE(p.kv_left_bytes, kv_left);
        QCOMPARE(p.sequence_tokens, 48);
        QCOMPARE(p.concurrent_sequences, std::int64_t(kv_left / (p.kv_bytes_per_token * 48)));
        // base: step(32) = 5 ms + 32·16/32 prefill tokens · 10 µs.
        const double base_step = 5e-3 + 16 * 1e-5;
        QCOMPARE(p.modes[0].mode, std::string("base"));
        QVERIFY(std::abs(p.modes[0].tokens_per_s - 32 / base_step) < 1e-6);
        // raw: the budget holds 97 of 1000 adapters: misses 1 - 97/1000 per request, 32/32 requests per step.
        QCOMPARE(p.modes[1].mode, std::string("raw"));
        const double miss = 1.0 - double(p.raw_adapters_resident) / 1000.0;
        QVERIFY(std::abs(p.modes[1].miss_rate - miss) < 1e-12);
        QVERIFY(std::abs(p.modes[1].tokens_per_s - 32 / (base_step + miss * 4e-3)) < 1e-6);
        QVERIFY(!p.modes[2].measured);
        // A cold run of 100 requests over a fleet that fits whole: nearly every request is a first use.
        o.memory_bytes = 4ull << 30;
        o.requests = 100;
        const auto cold = quality::make_plan(*weights(), f, steps, o);
        const double first = 1000.0 * (1.0 - std::pow(1.0 - 1.0 / 1000.0, 100)) / 100.0;
        QVERIFY(std::abs(cold.modes[1].miss_rate - first) < 1e-12);
        // A budget smaller than the weights: nothing fits, nothing negative.
        o.memory_bytes = 1024;
        const auto tiny = quality::make_plan(*weights(), f, steps, o);
        QCOMPARE(tiny.raw_adapters_resident, std::int64_t(0));
        QCOMPARE(tiny.compressed_adapters_resident, std::int64_t(0));
        QCOMPARE(tiny.kv_left_bytes, std::uint64_t(0));
    }

    void fleetBytes() {
        const auto b = test::make_random_bank(compress::jd_method::full, 3);
        const auto f = quality::bank_fleet_bytes(b);
        QCOMPARE(f.adapters, int(b.adapters.size()));
        std::uint64_t bases = 0;
        for (const auto& per : b.bases)
            for (const auto& basis : per)
                bases += (basis.u.size() + basis.vt.size()) * 4;
        QCOMPARE(f.bank_bases, bases);
        QCOMPARE(f.bank_core, std::uint64_t(b.rank * b.rank) * b.modules.size() * 4);
        std::vector<serve::adapter_info> raw(2);
        raw[0].bytes = 100;
        raw[1].bytes = 300;
        const auto r = quality::raw_fleet_bytes(raw);
        QCOMPARE(r.raw_mean, std::uint64_t(200));
        QCOMPARE(r.raw_max, std::uint64_t(300));
        QVERIFY(!r.has_bank);
    }

    void stepCacheIsReusedAndRemeasured() {
        QTemporaryDir tmp;
        const std::filesystem::path file = std::filesystem::path(tmp.path().toStdString()) / "sub/steps.json";
        const auto first = quality::load_or_measure_steps(weights(), nullptr, nullptr, "k", 1, file, false);
        QVERIFY(!first.from_cache);
        QVERIFY(std::filesystem::exists(file));
        QCOMPARE(first.modes.at("base").decode_s.size(), std::size_t(4));
        const auto second = quality::load_or_measure_steps(weights(), nullptr, nullptr, "k", 1, file, false);
        QVERIFY(second.from_cache);
        QCOMPARE(second.modes.at("base").decode_s, first.modes.at("base").decode_s);
        QVERIFY(!quality::load_or_measure_steps(weights(), nullptr, nullptr, "k", 1, file, true).from_cache);
        io::write_file_atomic(file, std::string("{not json"));
        QVERIFY(!quality::load_or_measure_steps(weights(), nullptr, nullptr, "k", 1, file, false).from_cache);
    }
};

QTEST_GUILESS_MAIN(TestCapacityPlan)
#include "test_capacity_plan.moc"
