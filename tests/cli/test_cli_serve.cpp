// `lorafleet-cli serve` as a real process: --port 0 prints the chosen port on stderr, a completion over
// HTTP equals the single-sequence generate() of the same model (greedy), SIGTERM during a streamed
// request lets that stream finish (ending with data: [DONE]) and the process exits 0; SIGTERM with
// requests that never finish (a client that stops reading, a body that never comes) still exits 0 within
// --shutdown-timeout plus a small margin; --api-key-file keys the server (a FIFO or an empty file is
// refused at once), an empty LORAFLEET_API_KEY and a non-loopback --host without a key exit 2; with
// --bank the compressed adapters are listed and a completion equals `lorafleet-cli generate --bank
// --adapter`; bad command lines exit 2.
#include "engine/io/hf_config.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"
#include "tests/support/cli_runner.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <nlohmann/json.hpp>

#include <csignal>
#include <set>
#include <sys/stat.h>
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

// 64 completions of 500 tokens with a KV budget for two sequences at a time: seconds of work queued
// behind each other, more than the drain allows. Plus a request whose announced body never comes.
struct backlog {
    std::vector<std::thread> clients;
    std::vector<test::http_reply> replies;
    std::unique_ptr<test::http_connection> half;
    explicit backlog(int port) : replies(64) {
        for (std::size_t i = 0; i < replies.size(); ++i)
            clients.emplace_back([this, port, i] {
                test::http_client c(port, 60000);
                replies[i] = c.post("/v1/completions", R"({"model":"tinystories-656k","prompt":"Once",)"
                                                       R"("max_tokens":500,"ignore_eos":true})");
            });
        half = std::make_unique<test::http_connection>(port, 5000);
        half->send("POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n{");
    }
    void join() {
        for (auto& t : clients)
            t.join();
    }
    int with_status(int status) const {
        int n = 0;
        for (const auto& r : replies)
            n += r.status == status ? 1 : 0;
        return n;
    }
};

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
        test::http_client c(port, 60000);
        const auto r = c.post("/v1/completions",
                              R"({"model":"tinystories-656k","prompt":"Once upon a time","max_tokens":20})");
        QCOMPARE(r.status, 200);
        const auto body = json::parse(r.body);
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
            test::http_client c(port, 60000);
            const auto r = c.request(
                "POST", "/v1/completions",
                R"({"model":"tinystories-656k","prompt":"Once","max_tokens":300,"ignore_eos":true,"stream":true})",
                {{"Authorization", "Bearer k-42"}}, [&](std::string_view piece) {
                    received.append(piece);
                    if (received.find("\"text\"") != std::string::npos) first_chunk = true;
                    return true;
                });
            transport_ok = r.status == 200;
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
        test::http_client c(port, 60000);
        const auto models = c.get("/v1/models");
        QCOMPARE(models.status, 200);
        std::set<std::string> ids;
        const json listing = json::parse(models.body);
        for (const auto& m : listing["data"]) {
            ids.insert(m["id"].get<std::string>());
            if (m["id"] != "tinystories-656k")
                QCOMPARE(m["parent"].get<std::string>(), std::string("tinystories-656k"));
        }
        QCOMPARE(ids, (std::set<std::string>{"tinystories-656k", "ad-a", "ad-b", "ad-c"}));
        const auto r =
            c.post("/v1/completions", R"({"model":"ad-b","prompt":"Once upon a time","max_tokens":16})");
        QCOMPARE(r.status, 200);
        QCOMPARE(QString::fromStdString(json::parse(r.body)["choices"][0]["text"].get<std::string>()),
                 generated.out);
        const auto health = c.get("/health");
        QCOMPARE(health.status, 200);
        QCOMPARE(json::parse(health.body)["adapter_mode"].get<std::string>(), std::string("compressed"));

        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(60000));
        QCOMPARE(p.exitCode(), 0);
    }

    void sigterm_with_never_ending_requests_exits_within_the_shutdown_timeout() {
        LORAFLEET_REQUIRE_FIXTURES();
        QProcess p;
        const int port = start_server(p, {"--shutdown-timeout", "1", "--kv-cache-mb", "1"});
        QVERIFY(port > 0);
        backlog work(port);
        QThread::msleep(1000); // all admitted, two running
        QElapsedTimer t;
        t.start();
        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(30000));
        const double took = t.elapsed() / 1000.0;
        work.join();
        QCOMPARE(p.exitStatus(), QProcess::NormalExit);
        QCOMPARE(p.exitCode(), 0);
        // 1 s of drain, then the rest are cancelled and answered: seconds, not the backlog's length.
        qInfo("SIGTERM to exit with a backlog and --shutdown-timeout 1: %.2f s (%d answered, %d cancelled)",
              took, work.with_status(200), work.with_status(503));
        QVERIFY2(took < 6.0, std::to_string(took).c_str());
        const QByteArray err = p.readAllStandardError();
        QVERIFY2(err.contains("shutdown timeout"), err.constData());
        // The cancelled requests' clients got an error; the ones that finished in time got their answer.
        QVERIFY(work.with_status(503) >= 1);
        QCOMPARE(work.with_status(200) + work.with_status(503), 64);
        for (const auto& r : work.replies)
            if (r.status == 503) QVERIFY(r.body.find("request_cancelled") != std::string::npos);
    }

    void a_second_sigterm_cancels_at_once() {
        LORAFLEET_REQUIRE_FIXTURES();
        QProcess p;
        const int port = start_server(p, {"--shutdown-timeout", "600", "--kv-cache-mb", "1"});
        QVERIFY(port > 0);
        backlog work(port);
        QThread::msleep(1000);
        QElapsedTimer t;
        t.start();
        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        QVERIFY(!p.waitForFinished(500)); // draining, for up to 600 s
        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(30000));
        work.join();
        QCOMPARE(p.exitCode(), 0);
        QVERIFY2(t.elapsed() < 8000, std::to_string(t.elapsed()).c_str());
        QVERIFY(p.readAllStandardError().contains("second signal"));
        QVERIFY(work.with_status(503) >= 1);
    }

    void api_key_file_keys_the_server() {
        LORAFLEET_REQUIRE_FIXTURES();
        QTemporaryDir tmp;
        const QString key_file = tmp.filePath("key");
        {
            QFile f(key_file);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write("s3cret-key\n");
        }
        QProcess p;
        const int port = start_server(p, {"--api-key-file", key_file});
        QVERIFY(port > 0);
        test::http_client c(port, 30000);
        QCOMPARE(c.get("/v1/models").status, 401);
        QCOMPARE(c.get("/v1/models", {{"Authorization", "Bearer s3cret-key"}}).status, 200);
        QCOMPARE(c.get("/v1/models", {{"Authorization", "Bearer s3cret-keyx"}}).status, 401);
        QCOMPARE(c.get("/health").status, 200);
        ::kill(static_cast<pid_t>(p.processId()), SIGTERM);
        QVERIFY(p.waitForFinished(30000));
        QCOMPARE(p.exitCode(), 0);
    }

    void key_refusals_exit_2() {
        LORAFLEET_REQUIRE_FIXTURES();
        const QString model =
            QString::fromStdString((test::fixtures_dir() / "models/tinystories-656k").string());
        QTemporaryDir tmp;
        const QString empty = tmp.filePath("empty");
        QFile(empty).open(QIODevice::WriteOnly);
        const auto e = test::run_cli({"serve", "--model", model, "--port", "0", "--api-key-file", empty});
        QCOMPARE(e.exit_code, 2);
        QVERIFY(e.err.contains("empty"));
        // A FIFO nobody writes to is refused at once, not waited on.
        const QString fifo = tmp.filePath("fifo");
        QCOMPARE(::mkfifo(fifo.toLocal8Bit().constData(), 0600), 0);
        QElapsedTimer t;
        t.start();
        const auto f =
            test::run_cli({"serve", "--model", model, "--port", "0", "--api-key-file", fifo}, 20000);
        QCOMPARE(f.exit_code, 2);
        QVERIFY(f.err.contains("regular file"));
        QVERIFY(t.elapsed() < 15000);
        QCOMPARE(test::run_cli({"serve", "--model", model, "--api-key-file", tmp.filePath("none")}).exit_code,
                 2);
        QCOMPARE(
            test::run_cli({"serve", "--model", model, "--api-key", "a", "--api-key-file", empty}).exit_code,
            2);
        // Reachable from other machines without a key.
        const auto open = test::run_cli({"serve", "--model", model, "--port", "0", "--host", "0.0.0.0"});
        QCOMPARE(open.exit_code, 2);
        QVERIFY(open.err.contains("--allow-no-key"));
        // An empty LORAFLEET_API_KEY does not silently mean "no key".
        QProcess p;
        auto env = QProcessEnvironment::systemEnvironment();
        env.insert("LORAFLEET_API_KEY", "");
        p.setProcessEnvironment(env);
        p.start(QString::fromStdString(test::cli_path().string()),
                {"serve", "--model", model, "--port", "0"});
        QVERIFY(p.waitForFinished(30000));
        QCOMPARE(p.exitCode(), 2);
        QVERIFY(p.readAllStandardError().contains("LORAFLEET_API_KEY"));
        QCOMPARE(
            test::run_cli({"serve", "--model", model, "--adapter-root", tmp.filePath("nothing")}).exit_code,
            2);
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
