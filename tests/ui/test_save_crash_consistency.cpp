// Crash consistency of the console's Save: the real `lorafleet` binary opens a saved workspace,
// compresses its fleet again and saves over it (`--workspace W --compress --save-as W`: the same code as
// File > Save), and is SIGKILLed at seeded random moments (runs bounded in number and time). After every
// kill the workspace file parses, the bank it names reads back with every checksum verified and holds all
// the adapters, and the workspace's adapters all load: the previous (or the new, complete) state, never a
// mix. One uninterrupted run first proves the child really saves (the workspace and bank are rewritten).
#include "engine/bank/bank_format.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QElapsedTimer>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <csignal>
#include <random>

using namespace lorafleet;

namespace {

constexpr int kAdapters = 8;
constexpr int kKills = 30;
constexpr int kChildTimeoutMs = 120'000;

QString guiBinary() {
    // Built next to the CLI (app/lorafleet and app/lorafleet-cli).
    return QFileInfo(QStringLiteral(LORAFLEET_CLI_PATH)).dir().filePath(QStringLiteral("lorafleet"));
}

QProcess* startChild(const QString& ws, const QString& config, QObject* parent) {
    auto* p = new QProcess(parent);
    QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
    env.insert("QT_QPA_PLATFORM", "offscreen");
    env.insert("XDG_CONFIG_HOME", config); // the child's recent-files list stays out of the operator's
    p->setProcessEnvironment(env);
    p->setProcessChannelMode(QProcess::MergedChannels);
    p->start(guiBinary(), {"--workspace", ws, "--compress", "--save-as", ws});
    return p;
}

// The saved state is whole: the workspace parses, its bank verifies and has every adapter.
void checkIntact(const QString& ws, const QString& when) {
    QString error;
    const auto data = ui::Workspace::read(ws, &error);
    QVERIFY2(data, qPrintable(when + ": " + error));
    QCOMPARE(data->adapterDirs.size(), kAdapters);
    QVERIFY2(!data->bankPath.isEmpty(), qPrintable(when));
    try {
        const auto bank = bank::read_bank(data->bankPath.toStdString()); // checksums verified
        QCOMPARE(int(bank.adapters.size()), kAdapters);
    } catch (const std::exception& e) {
        QFAIL(qPrintable(when + ": the bank does not read: " + QString::fromStdString(e.what())));
    }
}

} // namespace

class TestSaveCrashConsistency : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { test::isolateSettings(); }

    void killedSaveLeavesAReadableWorkspace() {
        if (!QFileInfo(guiBinary()).isExecutable())
            QFAIL(qPrintable("the console binary is not built: " + guiBinary()));
        QTemporaryDir dir;
        test::writeTinyFleet(dir.filePath("fleet"), kAdapters, 9);
        const QString ws = dir.filePath("ws.lorafleet");
        {
            ui::Session session;
            session.importPaths({dir.filePath("fleet")});
            QVERIFY(test::waitForImport(session));
            ui::CompressSettings s;
            s.rank = 4;
            s.clusters = 2;
            s.device = "cpu";
            QSignalSpy done(session.compressor(), &ui::CompressController::finished);
            QVERIFY(session.compressor()->start(s));
            QVERIFY(done.wait(240000));
            session.workspace()->setCompressionSettings(s.toJson());
            QString error;
            QVERIFY2(session.saveWorkspace(ws, &error), qPrintable(error));
        }
        checkIntact(ws, "initial save");
        const QString manifest = dir.filePath("ws.bank/manifest.json");

        // One whole run: it saves (the bank is rewritten) and its duration bounds the kill times.
        const QDateTime before = QFileInfo(manifest).lastModified();
        QTest::qWait(1100); // file times have 1 s granularity on some file systems
        QElapsedTimer clock;
        clock.start();
        QProcess* whole = startChild(ws, dir.filePath("config"), this);
        QVERIFY(whole->waitForFinished(kChildTimeoutMs));
        const qint64 fullMs = clock.elapsed();
        QVERIFY2(whole->exitStatus() == QProcess::NormalExit && whole->exitCode() == 0,
                 whole->readAll().constData());
        QVERIFY(QFileInfo(manifest).lastModified() > before);
        checkIntact(ws, "uninterrupted run");

        // Kills: a third anywhere in the run, the rest in its last fifth (where the writes are).
        std::mt19937 rng(1604);
        int killed = 0;
        for (int i = 0; i < kKills; ++i) {
            const double lo = i % 3 == 0 ? 0.05 : 0.8;
            const qint64 at = qint64(std::uniform_real_distribution<double>(lo, 1.05)(rng) * double(fullMs));
            QProcess* child = startChild(ws, dir.filePath("config"), this);
            QVERIFY(child->waitForStarted(10000));
            if (!child->waitForFinished(int(at))) {
                ::kill(pid_t(child->processId()), SIGKILL);
                QVERIFY(child->waitForFinished(10000));
                ++killed;
            }
            checkIntact(ws, QStringLiteral("run %1 killed at %2 ms of %3").arg(i).arg(at).arg(fullMs));
            delete child;
        }
        qInfo("%d of %d runs killed before they finished (a whole run takes %lld ms)", killed, kKills,
              fullMs);
        QVERIFY(killed >= kKills / 3);

        // And the console opens the survivor with all its adapters and the bank.
        ui::Session reopened;
        QString error;
        QVERIFY2(reopened.openWorkspace(ws, &error), qPrintable(error));
        QVERIFY(test::waitForImport(reopened));
        QTRY_VERIFY_WITH_TIMEOUT(!reopened.isBusy(), 60000);
        QCOMPARE(reopened.store()->size(), kAdapters);
        QVERIFY(reopened.bank());
    }
};

QTEST_MAIN(TestSaveCrashConsistency)
#include "test_save_crash_consistency.moc"
