// The soak benchmark (bench/bench_soak_serve) for 30 s with 8 clients against a real `lorafleet-cli serve`
// on the demo model: a mixed load of completions, chats, streams (some dropped mid-stream by the client),
// bad requests, live adapter adds / removes, slow-header and idle connections, /health polled every
// 100 ms. Expected: no request lost (every one answered, or a stream the client dropped on purpose), every
// bad request answered with a clear error, every /health poll answered within 5 s, completions of every
// kind answered 200, and the server exits 0 soon after SIGTERM. No speed targets (a shared machine).
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

#include <nlohmann/json.hpp>

using nlohmann::json;

class TestCliSoak : public QObject {
    Q_OBJECT

private slots:
    void thirty_seconds_of_mixed_load_lose_nothing() {
#ifndef LORAFLEET_SOAK_PATH
        QSKIP("built without LORAFLEET_BENCH: there is no bench_soak_serve to run");
#else
        const auto soak = lorafleet::test::path_from_env("LORAFLEET_TEST_SOAK", LORAFLEET_SOAK_PATH);
        QTemporaryDir work;
        QVERIFY(work.isValid());
        QProcess p;
        p.setProcessChannelMode(QProcess::SeparateChannels);
        p.start(QString::fromStdString(soak.string()),
                {"--cli", QString::fromStdString(lorafleet::test::cli_path().string()), "--model",
                 QString::fromStdString(lorafleet::test::demo_model_dir().string()), "--duration", "30",
                 "--clients", "8", "--slow-connections", "2", "--idle-connections", "2", "--timeout-s", "60",
                 "--shutdown-timeout", "60", "--work", work.path(), "--json"});
        QVERIFY(p.waitForStarted(10000));
        // Setup (synth + compress) takes seconds, the run 30 s, the client timeout and shutdown bound 60 s
        // each: 400 s is a generous watchdog.
        if (!p.waitForFinished(400000)) {
            p.kill();
            p.waitForFinished();
            QFAIL("bench_soak_serve did not finish within 400 s");
        }
        const QByteArray err = p.readAllStandardError();
        const json r = json::parse(p.readAllStandardOutput().toStdString(), nullptr, false);
        QVERIFY2(!r.is_discarded() && r.is_object(), err.constData());
        const std::string problems = r["problems"].dump() + " health: " + r["health"]["failures"].dump();

        QVERIFY2(r["requests"]["lost"] == 0, problems.c_str());
        QVERIFY2(r["requests"]["unclear"] == 0, problems.c_str());
        // Every poll answered (each had 5 s), and the poller ran all along (~300 polls in 30 s; a loaded
        // machine may slow it, not stop it).
        QCOMPARE(r["health"]["unanswered"].get<long long>(), 0ll);
        QVERIFY2(r["health"]["polls"].get<long long>() >= 30, r["health"].dump().c_str());
        QVERIFY(r["health"]["worst_ms"].get<double>() < 5000);
        QCOMPARE(r["server"]["crashed"].get<bool>(), false);
        QCOMPARE(r["server"]["shutdown_timed_out"].get<bool>(), false);
        QCOMPARE(r["server"]["exited"].get<bool>(), true);
        QCOMPARE(r["server"]["exit_code"].get<int>(), 0);

        for (const char* kind : {"completion", "completion_sampled", "chat", "stream", "stream_chat"})
            QVERIFY2(r["kinds"][kind]["ok"].get<long long>() > 0, kind);
        QVERIFY(r["kinds"]["stream_abort"]["client_aborted"].get<long long>() > 0);
        QVERIFY(r["kinds"]["adapter_add"]["ok"].get<long long>() > 0);
        QVERIFY(r["kinds"]["adapter_remove"]["ok"].get<long long>() > 0);
        for (const char* kind :
             {"bad_json", "bad_model", "bad_max_tokens", "bad_method", "adapter_bad_add"}) {
            const auto& k = r["kinds"][kind];
            QVERIFY2(k["sent"].get<long long>() > 0, kind);
            QVERIFY2(k["clear_error"] == k["sent"], (std::string(kind) + ": " + k.dump()).c_str());
        }
        QCOMPARE(r["passed"].get<bool>(), true);
        QCOMPARE(p.exitCode(), 0);
#endif
    }
};

QTEST_GUILESS_MAIN(TestCliSoak)
#include "test_cli_soak.moc"
