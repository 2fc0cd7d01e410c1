// `lorafleet-cli serve` as a real process: --port 0 prints the chosen port on stderr, a completion over
// HTTP equals the single-sequence generate() of the same model (greedy), SIGTERM during a streamed
// request lets that stream finish (ending with data: [DONE]) and the process exits 0; with --bank the
// compressed adapters are listed and a completion equals `lorafleet-cli generate --bank --adapter`; bad
// command lines exit 2.
#include "engine/io/hf_config.hpp"
#include "engine/serve/generate.hpp"
#include "engine/serve/model_weights.hpp"
#include "engine/serve/tokenizer.hpp"
#include "engine/serve/transformer.hpp"
#include "tests/support/cli_runner.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <set>
#include <thread>

using namespace lorafleet;
using nlohmann::json;

namespace {

// Starts the server and returns its port, read from "listening on http://127.0.0.1:PORT" on stderr.
int start_server(QProcess& p, const QStringList& extra = {}) {
    QStringList args = {"serve",
                        "--model",
                        QString::fromStdString((test::fixtures_dir() / "models/tinystories-656k").string()),
                        "--port",
                        "0",
                        "--threads",
                        "1"};
    args += extra;
    p.setProgram(QString::fromStdString(test::cli_path().string()));
    p.setArguments(args);
    p.start();
    if (!p.waitForStarted(30000)) return -1;
    QByteArray err;
    const QRegularExpression re("listening on http://127\\.0\\.0\\.1:(\\d+)");
    QElapsedTimer t;
    t.start();
    while (t.elapsed() < 60000) {
        p.waitForReadyRead(200);
        err += p.readAllStandardError();
        const auto m = re.match(QString::fromUtf8(err));
        if (m.hasMatch()) return m.captured(1).toInt();
        if (p.state() == QProcess::NotRunning) break;
    }
    qWarning("server stderr: %s", err.constData());
    return -1;
}

std::string expected_greedy(const std::string& prompt, int max_tokens) {
    const auto dir = test::fixtures_dir() / "models/tinystories-656k";
    auto weights = serve::model_weights::load(dir);
    auto tokenizer = serve::load_tokenizer(dir);
    serve::transformer model(weights, 1);
    serve::generation_params params;
    params.max_tokens = max_tokens;
    const auto ids = tokenizer->encode(prompt, true);
    return serve::generate(model, *tokenizer, ids, params).text;
}

} // namespace

class TestCliServe : public QObject {
    Q_OBJECT

private slots:
    void serves_one_completion_and_stops_on_sigterm() {
        LORAFLEET_REQUIRE_FIXTURES();
        QProcess p;
        p.setProcessChannelMode(QProcess::SeparateChannels);
        const int port = start_server(p);
        QVERIFY(port > 0);
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(60, 0);
        const auto r = c.Post("/v1/completions",
                              R"({"model":"tinystories-656k","prompt":"Once upon a time","max_tokens":20})",
                              "application/json");
        QVERIFY(r);
        QCOMPARE(r->status, 200);
        const auto body = json::parse(r->body);
        QCOMPARE(body["choices"][0]["text"].get<std::string>(), expected_greedy("Once upon a time", 20));
        QCOMPARE(body["usage"]["completion_tokens"].get<int>(), 20);

        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QCOMPARE(p.exitCode(), 0);
    }

    void sigterm_lets_an_in_flight_stream_finish() {
        LORAFLEET_REQUIRE_FIXTURES();
        QProcess p;
        const int port = start_server(p, {"--api-key", "k-42"});
        QVERIFY(port > 0);
        std::string received;
        std::atomic<bool> first_chunk{false};
        bool transport_ok = false;
        std::thread reader([&] {
            httplib::Client c("127.0.0.1", port);
            c.set_read_timeout(60, 0);
            httplib::Request req;
            req.method = "POST";
            req.path = "/v1/completions";
            req.headers = {{"Authorization", "Bearer k-42"}, {"Content-Type", "application/json"}};
            req.body =
                R"({"model":"tinystories-656k","prompt":"Once","max_tokens":300,"ignore_eos":true,"stream":true})";
            req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
                received.append(data, n);
                if (received.find("\"text\"") != std::string::npos) first_chunk = true;
                return true;
            };
            transport_ok = static_cast<bool>(c.send(req));
        });
        QElapsedTimer t;
        t.start();
        while (!first_chunk && t.elapsed() < 60000)
            QThread::msleep(1);
        QVERIFY(first_chunk);
        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        reader.join();
        QVERIFY(transport_ok);
        QVERIFY2(received.size() > 6 && received.substr(received.size() - 14) == "data: [DONE]\n\n",
                 received.substr(received.size() > 200 ? received.size() - 200 : 0).c_str());
        // All 300 tokens arrived: the stream was finished, not cut.
        int text_events = 0;
        for (std::size_t pos = 0;
             (pos = received.find("\"finish_reason\":\"length\"", pos)) != std::string::npos; ++pos)
            ++text_events;
        QCOMPARE(text_events, 1);
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QCOMPARE(p.exitCode(), 0);
        QVERIFY(p.readAllStandardError().contains("SIGTERM"));
    }

    void serves_a_compressed_bank() {
        LORAFLEET_REQUIRE_FIXTURES();
        QTemporaryDir tmp;
        const std::filesystem::path root = tmp.path().toStdString();
        const auto model = test::fixtures_dir() / "models/tinystories-656k";
        const auto geometry = io::read_hf_config(model / "config.json");
        const int ranks[] = {2, 4, 8};
        const double alphas[] = {4, 16, 8};
        const char* names[] = {"ad-a", "ad-b", "ad-c"};
        for (int i = 0; i < 3; ++i)
            test::write_crafted_adapter(
                root / "fleet" / names[i],
                test::crafted_llama_adapter(geometry, {"q_proj", "v_proj"}, ranks[i], alphas[i]));
        const QString bank = QString::fromStdString((root / "bank").string());
        const auto compressed = test::run_cli({"compress", QString::fromStdString((root / "fleet").string()),
                                               "--out", bank, "--rank", "8", "--dtype", "f32", "--base",
                                               QString::fromStdString((model / "config.json").string())});
        QVERIFY2(compressed.exit_code == 0, qPrintable(compressed.err));
        const auto generated = test::run_cli({"generate", "--model", QString::fromStdString(model.string()),
                                              "--bank", bank, "--adapter", "ad-b", "--prompt",
                                              "Once upon a time", "--max-tokens", "16", "--threads", "1"});
        QVERIFY2(generated.exit_code == 0, qPrintable(generated.err));

        QProcess p;
        const int port = start_server(p, {"--bank", bank});
        QVERIFY(port > 0);
        httplib::Client c("127.0.0.1", port);
        c.set_read_timeout(60, 0);
        const auto models = c.Get("/v1/models");
        QVERIFY(models);
        QCOMPARE(models->status, 200);
        std::set<std::string> ids;
        const json listing = json::parse(models->body);
        for (const auto& m : listing["data"]) {
            ids.insert(m["id"].get<std::string>());
            if (m["id"] != "tinystories-656k")
                QCOMPARE(m["parent"].get<std::string>(), std::string("tinystories-656k"));
        }
        QCOMPARE(ids, (std::set<std::string>{"tinystories-656k", "ad-a", "ad-b", "ad-c"}));
        const auto r =
            c.Post("/v1/completions", R"({"model":"ad-b","prompt":"Once upon a time","max_tokens":16})",
                   "application/json");
        QVERIFY(r);
        QCOMPARE(r->status, 200);
        QCOMPARE(QString::fromStdString(json::parse(r->body)["choices"][0]["text"].get<std::string>()),
                 generated.out);
        const auto health = c.Get("/health");
        QVERIFY(health);
        QCOMPARE(json::parse(health->body)["adapter_mode"].get<std::string>(), std::string("compressed"));

        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 0);
    }

    void bad_command_lines_exit_2() {
        const auto both = test::run_cli({"serve", "--model", "x", "--bank", "b", "--adapters", "a"});
        QCOMPARE(both.exit_code, 2);
        QVERIFY(both.err.contains("not both"));
        QCOMPARE(test::run_cli({"serve"}).exit_code, 2);
        QCOMPARE(test::run_cli({"serve", "--model", "x", "--port", "70000"}).exit_code, 2);
    }
};

QTEST_GUILESS_MAIN(TestCliServe)
#include "test_cli_serve.moc"
