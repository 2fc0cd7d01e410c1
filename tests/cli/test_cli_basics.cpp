// The CLI's contract at its boundary: exit codes (0 ok, 1 bad input, 2 usage), help, and `devices`.
#include "tests/support/cli_runner.hpp"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QtTest/QtTest>

using lorafleet::test::run_cli;

class TestCliBasics : public QObject {
    Q_OBJECT
private slots:
    void noArgumentsIsUsage() {
        const auto r = run_cli({});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.out.contains("usage: lorafleet-cli"));
    }
    void unknownCommandIsUsage() {
        const auto r = run_cli({"frobnicate"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("unknown command 'frobnicate'"));
    }
    void unknownOptionIsUsage() {
        const auto r = run_cli({"devices", "--bogus"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY(r.err.contains("unknown option --bogus"));
    }
    void versionPrints() {
        const auto r = run_cli({"--version"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY(r.out.startsWith("lorafleet-cli " LORAFLEET_VERSION));
    }
    void devicesJsonListsCpuAndCuda() {
        const auto r = run_cli({"devices", "--json"});
        QCOMPARE(r.exit_code, 0);
        QJsonParseError perr{};
        const auto doc = QJsonDocument::fromJson(r.out.toUtf8(), &perr);
        QCOMPARE(perr.error, QJsonParseError::NoError);
        const auto devices = doc.object().value("devices").toArray();
        QVERIFY(devices.size() >= 2);
        const auto cpu = devices.at(0).toObject();
        QCOMPARE(cpu.value("backend").toString(), QString("cpu"));
        QVERIFY(cpu.value("available").toBool());
        QCOMPARE(cpu.value("threads").toInt(), QThread::idealThreadCount());
        const auto cuda = devices.at(1).toObject();
        QCOMPARE(cuda.value("backend").toString(), QString("cuda"));
        // Either usable with a name and memory, or unusable with a reason: never both, never neither.
        if (cuda.value("available").toBool()) {
            QVERIFY(!cuda.value("name").toString().isEmpty());
            QVERIFY(cuda.value("memory_mb").toInt() > 0);
        } else {
            QVERIFY(!cuda.value("reason").toString().isEmpty());
        }
    }
};

QTEST_APPLESS_MAIN(TestCliBasics)
#include "test_cli_basics.moc"
