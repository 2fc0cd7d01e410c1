// `lorafleet-cli evaluate` end to end: a planted fleet (synth, noise 0) compressed at its exact rank
// agrees with its raw adapters everywhere (exact match 1, KL ~ 0) and the result lands in the bank's
// manifest (bank-info still validates the bank); --adapter, --csv, --no-save and --adapters DIR; a bank
// whose recorded sources are gone is a clear error that points at --adapters; bad usage exits 2.
#include "tests/support/cli_runner.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/test_paths.hpp"

#include <nlohmann/json.hpp>

#include <QElapsedTimer>
#include <QProcess>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <csignal>
#include <filesystem>
#include <fstream>

using namespace lorafleet;
using nlohmann::json;

namespace {

QString model_path() {
    return QString::fromStdString(test::demo_model_dir().string());
}

json manifest(const QString& bank) {
    std::ifstream in((bank + "/manifest.json").toStdString());
    return json::parse(in);
}

} // namespace

class TestCliEvaluate : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    QString m_fleet, m_bank;

    QStringList evaluate(const QStringList& extra) const {
        return QStringList{"evaluate",       "--model", model_path(),   "--bank", m_bank,
                           "--prompt-count", "4",       "--max-tokens", "8"} +
               extra;
    }

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        m_fleet = m_tmp.filePath("fleet");
        m_bank = m_tmp.filePath("bank");
        auto r = test::run_cli({"synth",
                                "--out",
                                m_fleet,
                                "--adapters",
                                "6",
                                "--geometry",
                                "tinystories-656k",
                                "--modules",
                                "q_proj,v_proj,o_proj,down_proj",
                                "--rank",
                                "2",
                                "--alpha",
                                "256",
                                "--clusters",
                                "2",
                                "--noise",
                                "0",
                                "--dtype",
                                "f32",
                                "--seed",
                                "4"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        r = test::run_cli(
            {"compress", m_fleet, "--rank", "2", "--clusters", "2", "--dtype", "f32", "--out", m_bank});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    }

    void exactBankAgreesAndIsStored() {
        const auto r = test::run_cli(evaluate({"--json"}));
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const json j = json::parse(r.out.toStdString());
        QCOMPARE(j["adapters"].size(), std::size_t(6));
        QCOMPARE(j["prompts"].get<int>(), 4);
        QCOMPARE(j["max_tokens"].get<int>(), 8);
        for (const auto& a : j["adapters"]) {
            QCOMPARE(a["exact_match"].get<double>(), 1.0);
            QCOMPARE(a["token_agreement"].get<double>(), 1.0);
            QCOMPARE(a["first_divergence"].get<int>(), -1);
            QVERIFY(a["mean_kl"].get<double>() < 1e-6);
            QVERIFY(a["cluster"].get<int>() >= 0);
            QVERIFY(a["error"].get<double>() < 1e-6);
            QCOMPARE(a["prompts"].get<int>(), 4);
        }
        const json m = manifest(m_bank);
        QVERIFY(m.contains("quality"));
        QCOMPARE(m["quality"]["adapters"].size(), std::size_t(6));
        QCOMPARE(m["quality"]["prompts"].get<int>(), 4);
        QCOMPARE(m["version"].get<int>(), 1);
        const auto info = test::run_cli({"bank-info", m_bank});
        QVERIFY2(info.exit_code == 0, qPrintable(info.err));
    }

    void subsetCsvWithoutSaving() {
        const auto before = manifest(m_bank);
        const auto r = test::run_cli(evaluate({"--adapter", "adapter-0001", "--csv", "--no-save"}));
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const QStringList lines = r.out.trimmed().split('\n');
        QCOMPARE(lines.size(), 2);
        QVERIFY(lines[0].startsWith("name,cluster,error,exact_match,token_agreement"));
        QVERIFY(lines[1].startsWith("adapter-0001,"));
        QCOMPARE(manifest(m_bank), before);
    }

    void goneSourcesPointAtAdaptersFlag() {
        const QString moved = m_tmp.filePath("moved");
        std::filesystem::rename(m_fleet.toStdString(), moved.toStdString());
        auto r = test::run_cli(evaluate({"--no-save"}));
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("--adapters"), qPrintable(r.err));
        QVERIFY(r.err.contains("adapter-0000"));
        r = test::run_cli(
            evaluate({"--adapters", moved, "--adapter", "adapter-0003", "--json", "--no-save"}));
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const json j = json::parse(r.out.toStdString());
        QCOMPARE(j["adapters"].size(), std::size_t(1));
        QCOMPARE(j["adapters"][0]["token_agreement"].get<double>(), 1.0);
        std::filesystem::rename(moved.toStdString(), m_fleet.toStdString());
    }

    // Hybrid serving end to end: a planted fleet plus two adapters from unrelated rank-6 subspaces,
    // compressed at rank 3 = the members' rank into 4 clusters (the 3 groups, and the outliers together in
    // one that fits them only partly: the clustering's optimum whatever the driver's start): compress --model
    // --keep-raw-below-agreement picks exactly the two; the bank is format 2; generate serves them raw (the
    // text equals generate --adapters on their folders) and the others compressed (equal to a plain bank's).
    void keepRawBelowAgreementAndHybridGenerate() {
        const QString root = m_tmp.filePath("hybrid");
        auto r = test::run_cli({"synth",
                                "--out",
                                root + "/members",
                                "--adapters",
                                "9",
                                "--geometry",
                                "tinystories-656k",
                                "--modules",
                                "q_proj,v_proj,o_proj,down_proj",
                                "--rank",
                                "3",
                                "--alpha",
                                "384",
                                "--clusters",
                                "3",
                                "--noise",
                                "0",
                                "--dtype",
                                "f32",
                                "--seed",
                                "7"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        r = test::run_cli({"synth",
                           "--out",
                           root + "/other",
                           "--adapters",
                           "4",
                           "--geometry",
                           "tinystories-656k",
                           "--modules",
                           "q_proj,v_proj,o_proj,down_proj",
                           "--rank",
                           "6",
                           "--alpha",
                           "768",
                           "--clusters",
                           "4",
                           "--noise",
                           "0",
                           "--dtype",
                           "f32",
                           "--seed",
                           "99"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        namespace fs = std::filesystem;
        const fs::path fleet = (root + "/fleet").toStdString();
        fs::create_directories(fleet);
        fs::rename((root + "/members").toStdString(), fleet / "members");
        fs::rename((root + "/other/adapter-0001").toStdString(), fleet / "outlier-a");
        fs::rename((root + "/other/adapter-0002").toStdString(), fleet / "outlier-b");
        const QString bank = root + "/bank";
        r = test::run_cli({"compress", QString::fromStdString(fleet.string()), "--rank", "3", "--clusters",
                           "4", "--dtype", "f32", "--out", bank, "--model", model_path(), "--prompt-count",
                           "6", "--max-tokens", "16", "--keep-raw-below-agreement", "0.9", "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const json j = json::parse(r.out.toStdString());
        QCOMPARE(j["raw_adapters"].get<std::vector<std::string>>(),
                 (std::vector<std::string>{"outlier-a", "outlier-b"}));
        const json m = manifest(bank);
        QCOMPARE(m["version"].get<int>(), 2);
        QCOMPARE(m["quality"]["adapters"].size(), std::size_t(11));

        auto gen = [&](const QStringList& source, const QString& adapter) {
            const auto g =
                test::run_cli(QStringList{"generate", "--model", model_path(), "--prompt", "Once upon a time",
                                          "--max-tokens", "24", "--adapter", adapter} +
                              source);
            if (g.exit_code != 0) qWarning("%s", qPrintable(g.err));
            return g.out;
        };
        const QString raw_a =
            gen({"--adapters", QString::fromStdString((fleet / "outlier-a").string())}, "outlier-a");
        QVERIFY(!raw_a.isEmpty());
        QCOMPARE(gen({"--bank", bank}, "outlier-a"), raw_a);
        // The plain bank (format 1 copy without the raw list) serves outlier-a compressed: another text.
        const QString plain = root + "/plain";
        r = test::run_cli({"compress", QString::fromStdString(fleet.string()), "--rank", "3", "--clusters",
                           "4", "--dtype", "f32", "--out", plain});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QCOMPARE(manifest(plain)["version"].get<int>(), 1);
        QVERIFY(gen({"--bank", plain}, "outlier-a") != raw_a);
        QCOMPARE(gen({"--bank", bank}, "adapter-0004"), gen({"--bank", plain}, "adapter-0004"));
        // bank-info accepts the format-2 bank.
        const auto info = test::run_cli({"bank-info", bank});
        QVERIFY2(info.exit_code == 0, qPrintable(info.err));
        // serve: /v1/models says which path serves each adapter, /metrics counts them and names the raw ones.
        QProcess server;
        server.setProgram(QString::fromStdString(test::cli_path().string()));
        server.setArguments(
            {"serve", "--model", model_path(), "--bank", bank, "--port", "0", "--threads", "1"});
        server.start();
        QVERIFY(server.waitForStarted(30000));
        int port = -1;
        QByteArray err;
        QElapsedTimer t;
        t.start();
        const QRegularExpression re("listening on http://127\\.0\\.0\\.1:(\\d+)");
        while (port < 0 && t.elapsed() < 60000 && server.state() != QProcess::NotRunning) {
            server.waitForReadyRead(200);
            err += server.readAllStandardError();
            const auto match = re.match(QString::fromUtf8(err));
            if (match.hasMatch()) port = match.captured(1).toInt();
        }
        QVERIFY2(port > 0, err.constData());
        {
            test::http_client c(port, 60000);
            const auto models = c.get("/v1/models");
            QCOMPARE(models.status, 200);
            int raw = 0, compressed = 0;
            const json listed = json::parse(models.body);
            for (const auto& entry : listed["data"]) {
                if (!entry.contains("lorafleet_serving")) continue;
                const auto path = entry["lorafleet_serving"].get<std::string>();
                const auto id = entry["id"].get<std::string>();
                QCOMPARE(path, std::string(id.rfind("outlier-", 0) == 0 ? "raw" : "compressed"));
                (path == "raw" ? raw : compressed)++;
            }
            QCOMPARE(raw, 2);
            QCOMPARE(compressed, 9);
            const auto metrics = c.get("/metrics");
            QCOMPARE(metrics.status, 200);
            QVERIFY(metrics.body.find("lorafleet_adapters_served{path=\"raw\"} 2") != std::string::npos);
            QVERIFY(metrics.body.find("lorafleet_adapter_served_raw{adapter=\"outlier-b\"} 1") !=
                    std::string::npos);
            const auto one = c.get("/v1/models/outlier-a");
            QCOMPARE(json::parse(one.body)["lorafleet_serving"].get<std::string>(), std::string("raw"));
        }
        ::kill(static_cast<pid_t>(server.processId()), SIGTERM);
        QVERIFY(server.waitForFinished(60000));
        QCOMPARE(server.exitCode(), 0);

        // --keep-raw-below-agreement without --model is a usage error.
        r = test::run_cli({"compress", QString::fromStdString(fleet.string()), "--out", root + "/x",
                           "--keep-raw-below-agreement", "0.9"});
        QCOMPARE(r.exit_code, 2);
    }

    void badUsage() {
        auto r = test::run_cli(evaluate({"--adapter", "no-such-adapter"}));
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("no-such-adapter"));
        r = test::run_cli(evaluate({"--json", "--csv"}));
        QCOMPARE(r.exit_code, 2);
        r = test::run_cli({"evaluate", "--model", model_path()});
        QCOMPARE(r.exit_code, 2);
        r = test::run_cli(evaluate({"--max-tokens", "0"}));
        QCOMPARE(r.exit_code, 2);
    }
};

QTEST_GUILESS_MAIN(TestCliEvaluate)
#include "test_cli_evaluate.moc"
