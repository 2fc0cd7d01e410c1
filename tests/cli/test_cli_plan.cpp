// `lorafleet-cli plan` end to end on the demo model: with a bank it reports the weights, KV bytes per
// token, raw and compressed bytes, what fits in --memory-gb and a prediction for base, raw (the bank's
// sources) and compressed; the step times are measured once into --cache and then read back (the same
// predictions), --remeasure measures again; with --adapters there is no compressed prediction; bad usage
// exits 2.
#include "tests/support/cli_runner.hpp"
#include "tests/support/test_paths.hpp"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest/QtTest>

using namespace lorafleet;
using nlohmann::json;

class TestCliPlan : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    QString m_fleet, m_bank, m_cache;

    static QString model() { return QString::fromStdString(test::demo_model_dir().string()); }

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        m_fleet = m_tmp.filePath("fleet");
        m_bank = m_tmp.filePath("bank");
        m_cache = m_tmp.filePath("steps.json");
        auto r =
            test::run_cli({"synth", "--out", m_fleet, "--adapters", "8", "--geometry", "tinystories-656k",
                           "--modules", "q_proj,v_proj", "--rank", "4", "--clusters", "2", "--seed", "2"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        r = test::run_cli({"compress", m_fleet, "--rank", "4", "--clusters", "2", "--out", m_bank});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    }

    void bankPlanAndCache() {
        const QStringList args{"plan",        "--model", model(),   "--bank", m_bank,
                               "--memory-gb", "0.01",    "--cache", m_cache,  "--json"};
        auto r = test::run_cli(args);
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const json j = json::parse(r.out.toStdString());
        QCOMPARE(j["adapters"].get<int>(), 8);
        QCOMPARE(j["kv_bytes_per_token"].get<int>(), 1024); // 2 layers x 4 KV heads x 16 dims x K,V x 4 bytes
        // Raw: rank 4 on q (128x128) and v (64x128) in 2 layers, float32.
        QCOMPARE(j["raw_adapter_bytes"].get<std::uint64_t>(), std::uint64_t(2 * 4 * (256 + 192) * 4));
        const auto budget = j["memory_bytes"].get<std::uint64_t>();
        const auto weights = j["weight_bytes"].get<std::uint64_t>();
        QCOMPARE(j["raw_adapters_resident"].get<std::uint64_t>(),
                 (budget - weights) / (2 * 4 * (256 + 192) * 4));
        QVERIFY(!j["step_times_cached"].get<bool>());
        for (const auto& m : j["modes"]) {
            QVERIFY(m["measured"].get<bool>());
            QVERIFY(m["tokens_per_s"].get<double>() > 0);
        }
        r = test::run_cli(args);
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const json again = json::parse(r.out.toStdString());
        QVERIFY(again["step_times_cached"].get<bool>());
        QCOMPARE(again["modes"], j["modes"]);
        r = test::run_cli(args + QStringList{"--remeasure"});
        QVERIFY(!json::parse(r.out.toStdString())["step_times_cached"].get<bool>());
        // The text form.
        r = test::run_cli(
            {"plan", "--model", model(), "--bank", m_bank, "--memory-gb", "1", "--cache", m_cache});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY(r.out.contains("compressed") && r.out.contains("tokens/s"));
    }

    void rawPlanHasNoCompressedPrediction() {
        const auto r = test::run_cli({"plan", "--model", model(), "--adapters", m_fleet, "--memory-gb", "1",
                                      "--cache", m_cache, "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const json j = json::parse(r.out.toStdString());
        QCOMPARE(j["bank_bases_bytes"].get<int>(), 0);
        QCOMPARE(j["modes"][2]["mode"].get<std::string>(), std::string("compressed"));
        QVERIFY(!j["modes"][2]["measured"].get<bool>());
        QVERIFY(j["modes"][1]["measured"].get<bool>());
    }

    void badUsage() {
        QCOMPARE(test::run_cli({"plan", "--model", model()}).exit_code, 2);
        QCOMPARE(
            test::run_cli({"plan", "--model", model(), "--bank", m_bank, "--adapters", m_fleet}).exit_code,
            2);
        QCOMPARE(test::run_cli({"plan", "--model", model(), "--bank", m_bank, "--device", "cuda"}).exit_code,
                 2);
        QCOMPARE(test::run_cli({"plan", "--model", model(), "--bank", m_bank, "--memory-gb", "-1"}).exit_code,
                 2);
    }
};

QTEST_GUILESS_MAIN(TestCliPlan)
#include "test_cli_plan.moc"
