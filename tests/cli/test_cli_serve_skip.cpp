// `lorafleet-cli serve --adapters` with a broken adapter among good ones (issue 17): the server starts,
// prints one "serve: skipped adapter 'NAME' (FOLDER): REASON" line per unusable adapter on stderr before
// "listening on", lists exactly the good adapters in /v1/models, answers a completion through one of them
// and 404 for the skipped one, and exits 0 on SIGTERM. When every adapter is unusable, serve exits 1 with
// the reasons and never listens.
#include "engine/serve/model/model_weights.hpp"
#include "tests/support/cli_runner.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <nlohmann/json.hpp>

#include <csignal>
#include <set>

using namespace lorafleet;
using nlohmann::json;
namespace fs = std::filesystem;

class TestCliServeSkip : public QObject {
    Q_OBJECT
    QTemporaryDir m_tmp;
    fs::path root() const { return fs::path(m_tmp.path().toStdString()); }
    QString model() const { return QString::fromStdString(test::demo_model_dir().string()); }

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        const auto g = serve::model_weights::load(test::demo_model_dir())->geometry();
        test::write_crafted_adapter(root() / "fleet" / "good-a",
                                    test::crafted_llama_adapter(g, {"q_proj"}, 2, 4.0));
        test::write_crafted_adapter(root() / "fleet" / "good-b",
                                    test::crafted_llama_adapter(g, {"v_proj"}, 2, 4.0));
        auto broken = test::crafted_llama_adapter(g, {"q_proj"}, 2, 4.0);
        broken.write_weights = false; // adapter_config.json without adapter_model.safetensors
        test::write_crafted_adapter(root() / "fleet" / "broken", broken);
    }

    void serveSkipsTheBrokenAdapterAndListsIt() {
        QProcess p;
        p.setProgram(QString::fromStdString(test::cli_path().string()));
        p.setArguments({"serve", "--model", model(), "--port", "0", "--threads", "1", "--adapters",
                        QString::fromStdString((root() / "fleet").string())});
        p.start();
        QVERIFY(p.waitForStarted(30000));
        QByteArray err;
        int port = -1;
        const QRegularExpression re("listening on http://127\\.0\\.0\\.1:(\\d+)");
        QElapsedTimer t;
        t.start();
        while (t.elapsed() < 60000 && port < 0) {
            p.waitForReadyRead(200);
            err += p.readAllStandardError();
            const auto m = re.match(QString::fromUtf8(err));
            if (m.hasMatch()) port = m.captured(1).toInt();
            if (p.state() == QProcess::NotRunning) break;
        }
        QVERIFY2(port > 0, err.constData());
        const QString text = QString::fromUtf8(err);
        const QString folder = QString::fromStdString((root() / "fleet" / "broken").string());
        const QString line = "serve: skipped adapter 'broken' (" + folder + "): ";
        QVERIFY2(text.contains(line), err.constData());
        QCOMPARE(text.count("skipped adapter"), 1);
        QVERIFY2(text.indexOf(line) < text.indexOf("listening on"), err.constData());
        QVERIFY2(text.contains("2 adapters (raw mode)"), err.constData());

        test::http_client c(port, 60000);
        const auto models = c.get("/v1/models");
        QCOMPARE(models.status, 200);
        std::set<std::string> ids;
        const json listing = json::parse(models.body);
        for (const auto& m : listing["data"])
            ids.insert(m["id"].get<std::string>());
        QVERIFY2(ids == (std::set<std::string>{"tinystories-656k", "good-a", "good-b"}), models.body.c_str());
        QCOMPARE(c.post("/v1/completions", R"({"model":"good-b","prompt":"Once","max_tokens":4})").status,
                 200);
        QCOMPARE(c.post("/v1/completions", R"({"model":"broken","prompt":"Once","max_tokens":4})").status,
                 404);

        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(30000));
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QCOMPARE(p.exitCode(), 0);
    }

    void serveRefusesWhenNothingIsUsable() {
        const auto r =
            test::run_cli({"serve", "--model", model(), "--port", "0", "--threads", "1", "--adapters",
                           QString::fromStdString((root() / "fleet" / "broken").string())});
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("none of the adapters could be loaded"), qPrintable(r.err));
        QVERIFY2(r.err.contains("broken"), qPrintable(r.err));
        QVERIFY2(!r.err.contains("listening on"), qPrintable(r.err));
    }
};

QTEST_GUILESS_MAIN(TestCliServeSkip)
#include "test_cli_serve_skip.moc"
