// `lorafleet-cli generate` end to end on the fixture model: greedy text from an empty prompt equals the
// independent reference's greedy text (the whole story up to EOS, and a 64-token prefix of it), sampling
// is reproducible with --seed, and wrong command lines / model folders give exit codes 2 / 1.
#include "tests/support/cli_runner.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>
#include <nlohmann/json.hpp>

#include <fstream>

using namespace lorafleet;

namespace {

QString model_path() {
    return QString::fromStdString((test::fixtures_dir() / "models/tinystories-656k").string());
}

nlohmann::json reference() {
    std::ifstream in(test::fixtures_dir() / "reference/tinystories656k_bos_greedy64.json");
    return nlohmann::json::parse(in);
}

} // namespace

class TestCliGenerate : public QObject {
    Q_OBJECT
private slots:
    void init() { LORAFLEET_REQUIRE_FIXTURES(); }

    void greedyFromBosMatchesReferenceText() {
        const auto r =
            test::run_cli({"generate", "--model", model_path(), "--prompt", "", "--max-tokens", "400"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        // The reference decodes every greedy token up to EOS (the model spells "<|end_story|>" out as text
        // before emitting the EOS token, which is not printed).
        QCOMPARE(r.out, QString::fromStdString(reference()["greedy_text"].get<std::string>()));
        QVERIFY(r.err.isEmpty());
    }

    void maxTokensCutsTheText() {
        const auto r =
            test::run_cli({"generate", "--model", model_path(), "--prompt", "", "--max-tokens", "63"});
        QCOMPARE(r.exit_code, 0);
        const QString full = QString::fromStdString(reference()["greedy_text"].get<std::string>());
        QVERIFY(!r.out.isEmpty());
        QVERIFY(full.startsWith(r.out));
        QVERIFY(r.out.size() < full.size());
        // 63 tokens = tokens[1..63] of the reference, whose last piece is "hom" ("e.▁She▁" would follow).
        QVERIFY2(r.out.endsWith("find its way hom"), qPrintable(r.out.right(40)));
    }

    void promptIsContinued() {
        const auto r = test::run_cli({"generate", "--model", model_path(), "--prompt", "Once upon a time",
                                      "--max-tokens", "8", "--stats"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY(!r.out.isEmpty());
        QVERIFY2(!r.out.startsWith("Once"), qPrintable(r.out)); // only the generated text is printed
        QVERIFY2(r.err.contains("tok/s"), qPrintable(r.err));
    }

    void seedMakesSamplingReproducible() {
        const QStringList args = {"generate",     "--model", model_path(),    "--prompt", "Tom",
                                  "--max-tokens", "30",      "--temperature", "1.0",      "--top-k",
                                  "40",           "--top-p", "0.9",           "--seed",   "7"};
        const auto a = test::run_cli(args), b = test::run_cli(args);
        QCOMPARE(a.exit_code, 0);
        QCOMPARE(a.out, b.out);
        auto other = args;
        other.last() = "8";
        QVERIFY(test::run_cli(other).out != a.out);
    }

    void wrongUsageExitsTwo() {
        QCOMPARE(test::run_cli({"generate", "--prompt", "x", "--max-tokens", "3"}).exit_code, 2);
        QCOMPARE(test::run_cli({"generate", "--model", model_path(), "--max-tokens", "3"}).exit_code, 2);
        QCOMPARE(test::run_cli({"generate", "--model", model_path(), "--prompt", "x"}).exit_code, 2);
        QCOMPARE(test::run_cli({"generate", "--model", model_path(), "--prompt", "x", "--max-tokens", "3",
                                "--adapter", "a"})
                     .exit_code,
                 2); // adapters come with the serving part that owns them: not accepted yet
        QCOMPARE(test::run_cli({"generate", "--model", model_path(), "--prompt", "x", "--max-tokens", "3",
                                "--top-p", "1.5"})
                     .exit_code,
                 2);
    }

    void badModelFolderExitsOne() {
        QTemporaryDir tmp;
        const auto r =
            test::run_cli({"generate", "--model", tmp.path(), "--prompt", "x", "--max-tokens", "3"});
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("config.json"), qPrintable(r.err));
        std::ofstream(tmp.path().toStdString() + "/config.json")
            << R"({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                  "intermediate_size": 128, "vocab_size": 100,
                  "rope_scaling": {"type": "dynamic", "factor": 2}})";
        const auto s =
            test::run_cli({"generate", "--model", tmp.path(), "--prompt", "x", "--max-tokens", "3"});
        QCOMPARE(s.exit_code, 1);
        QVERIFY2(s.err.contains("rope_scaling"), qPrintable(s.err));
    }
};

QTEST_GUILESS_MAIN(TestCliGenerate)
#include "test_cli_generate.moc"
