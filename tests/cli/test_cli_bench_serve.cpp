// bench-serve through the real CLI on the demo model with a tiny synthetic fleet (synth + compress): the
// JSON report has one run per mode in order, every request finished, and since EOS is ignored each mode
// produced exactly requests × max_tokens tokens; the compressed and raw modes report the fleet's size, the
// raw mode's cache counts one lookup per adapter per step; with --rounds K each mode runs K times in turn
// and reports its median round. Wrong usage exits with code 2.
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/cli_runner.hpp"
#include "tests/support/test_paths.hpp"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <algorithm>
#include <fstream>
#include <vector>

using lorafleet::test::run_cli;

namespace {

QString model_dir() {
    return QString::fromStdString(
        (lorafleet::test::source_dir() / "resources/models/tinystories-656k").string());
}

QJsonObject parse_object(const QString& text) {
    QJsonParseError err{};
    const auto doc = QJsonDocument::fromJson(text.toUtf8(), &err);
    if (err.error != QJsonParseError::NoError) qWarning() << "bad JSON:" << text.left(400);
    return doc.object();
}

} // namespace

class TestCliBenchServe : public QObject {
    Q_OBJECT
private slots:
    void compressedRawAndBaseServeEveryRequest() {
        QTemporaryDir tmp;
        const QString fleet = tmp.path() + "/fleet", bank = tmp.path() + "/bank";
        auto r = run_cli({"synth", "--out", fleet, "--adapters", "6", "--geometry", "tinystories-656k",
                          "--rank", "4", "--clusters", "2", "--dtype", "f32", "--seed", "3"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        r = run_cli({"compress", fleet, "--rank", "4", "--clusters", "2", "--out", bank});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));

        const int requests = 10, max_tokens = 6;
        r = run_cli({"bench-serve", "--model", model_dir(), "--bank", bank, "--compare", "base,raw",
                     "--requests", QString::number(requests), "--max-tokens", QString::number(max_tokens),
                     "--concurrency", "4", "--seed", "7", "--threads", "1", "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto runs = parse_object(r.out)["runs"].toArray();
        QCOMPARE(runs.size(), 3);
        const QStringList modes{"compressed", "base", "raw"};
        for (int i = 0; i < runs.size(); ++i) {
            const auto run = runs[i].toObject();
            QCOMPARE(run["mode"].toString(), modes[i]);
            QCOMPARE(run["adapters"].toInt(), modes[i] == "base" ? 0 : 6);
            QCOMPARE(run["requests"].toInt(), requests);
            QCOMPARE(run["finished"].toInt(), requests);
            QCOMPARE(run["failed"].toInt(), 0);
            // EOS is ignored, so every request generates exactly max_tokens tokens.
            QCOMPARE(run["completion_tokens"].toInteger(), qint64(requests * max_tokens));
            QVERIFY(run["prompt_tokens"].toInteger() >= requests * 2);
            QVERIFY(run["requests_per_s"].toDouble() > 0);
            QVERIFY(run["tokens_per_s"].toDouble() > 0);
            // tokens/s and requests/s come from the same wall time.
            QVERIFY(qAbs(run["tokens_per_s"].toDouble() - run["requests_per_s"].toDouble() * max_tokens) <
                    1e-6 * run["tokens_per_s"].toDouble() + 1e-9);
            QVERIFY(run["p50_ms"].toDouble() > 0 && run["p50_ms"].toDouble() <= run["p99_ms"].toDouble());
            QVERIFY(run["peak_rss_mb"].toDouble() > 1);
        }
        // Raw mode looked its adapters up in the cache; the others have no cache.
        const auto raw = runs[2].toObject();
        QVERIFY(raw["cache_hits"].toInteger() + raw["cache_misses"].toInteger() > 0);
        QVERIFY(raw["cache_hit_rate"].isDouble());
        QVERIFY(runs[0].toObject()["cache_hit_rate"].isNull() ||
                runs[0].toObject()["cache_hit_rate"].isDouble());
        QVERIFY(runs[1].toObject()["cache_hit_rate"].isNull());

        // The table form has a header and one line per mode.
        r = run_cli({"bench-serve", "--model", model_dir(), "--adapters", fleet, "--requests", "3",
                     "--max-tokens", "2", "--threads", "1"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto lines = r.out.split('\n', Qt::SkipEmptyParts);
        QCOMPARE(lines.size(), 2);
        QVERIFY(lines[0].startsWith("mode"));
        QVERIFY(lines[1].startsWith("raw"));
    }

    void aPromptsFileWithoutBlankLinesGivesOnePromptPerLine() {
        QTemporaryDir tmp;
        const QString fleet = tmp.path() + "/fleet";
        auto r = run_cli({"synth", "--out", fleet, "--adapters", "2", "--geometry", "tinystories-656k",
                          "--rank", "2", "--dtype", "f32"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        // Two copies of one line: every request's prompt is exactly that line (plus BOS), never both.
        const std::string text = "Once upon a time there was a little cat.";
        const QString prompts = tmp.path() + "/prompts.txt";
        {
            std::ofstream f(prompts.toStdString());
            f << text << "\n" << text << "\n";
        }
        const auto tokenizer = lorafleet::serve::load_tokenizer(model_dir().toStdString());
        const auto ids = tokenizer->encode(text, true);
        const int requests = 5;
        r = run_cli({"bench-serve", "--model", model_dir(), "--adapters", fleet, "--requests",
                     QString::number(requests), "--max-tokens", "3", "--prompts", prompts, "--threads", "1",
                     "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto run = parse_object(r.out)["runs"].toArray()[0].toObject();
        QCOMPARE(run["prompt_tokens"].toInteger(), qint64(requests) * qint64(ids.size()));
        QCOMPARE(run["completion_tokens"].toInteger(), qint64(requests * 3));
    }

    void roundsReportEachModesMedianRound() {
        QTemporaryDir tmp;
        const QString fleet = tmp.path() + "/fleet";
        auto r = run_cli({"synth", "--out", fleet, "--adapters", "3", "--geometry", "tinystories-656k",
                          "--rank", "2", "--dtype", "f32"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const int requests = 4, max_tokens = 3;
        r = run_cli({"bench-serve", "--model", model_dir(), "--adapters", fleet, "--compare", "base",
                     "--requests", QString::number(requests), "--max-tokens", QString::number(max_tokens),
                     "--rounds", "3", "--threads", "1", "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto doc = parse_object(r.out);
        QCOMPARE(doc["rounds"].toInt(), 3);
        const auto runs = doc["runs"].toArray();
        QCOMPARE(runs.size(), 2);
        QCOMPARE(runs[0].toObject()["mode"].toString(), QString("raw"));
        QCOMPARE(runs[1].toObject()["mode"].toString(), QString("base"));
        for (const auto& v : runs) {
            const auto run = v.toObject();
            const auto rates = run["rounds_tokens_per_s"].toArray();
            QCOMPARE(rates.size(), 3);
            std::vector<double> sorted;
            for (const auto& x : rates) {
                QVERIFY(x.toDouble() > 0);
                sorted.push_back(x.toDouble());
            }
            std::sort(sorted.begin(), sorted.end());
            QCOMPARE(run["tokens_per_s"].toDouble(), sorted[1]); // the median round, whole
            QCOMPARE(run["completion_tokens"].toInteger(), qint64(requests * max_tokens));
            QVERIFY(qAbs(run["tokens_per_s"].toDouble() - run["requests_per_s"].toDouble() * max_tokens) <
                    1e-6 * run["tokens_per_s"].toDouble() + 1e-9);
        }
        // The stderr log names every round of every mode.
        QCOMPARE(r.err.count("(round "), 2 * 3 * 2); // a start and an end line each
    }

    void wrongUsageExitsWithTwo() {
        auto r = run_cli({"bench-serve", "--model", model_dir(), "--requests", "2", "--max-tokens", "2"});
        QCOMPARE(r.exit_code, 2); // neither --bank nor --adapters
        r = run_cli({"bench-serve", "--model", model_dir(), "--adapters", "x", "--requests", "2",
                     "--max-tokens", "2", "--compare", "turbo"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("turbo"));
        r = run_cli({"bench-serve", "--model", model_dir(), "--adapters", "x", "--requests", "2",
                     "--max-tokens", "2", "--rounds", "0"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("rounds"));
    }
};

QTEST_GUILESS_MAIN(TestCliBenchServe)
#include "test_cli_bench_serve.moc"
