// Crash consistency of the console's Save: the real `lorafleet` binary opens a saved workspace,
// compresses its fleet again and saves over it (`--workspace W --compress --save-as W`: the same code as
// File > Save), and is SIGKILLed at seeded random moments (runs bounded in number and time). After every
// kill the workspace file parses, the bank it names reads back with every checksum verified and holds all
// the adapters, and the workspace's adapters all load: the previous (or the new, complete) state, never a
// mix. One uninterrupted run first proves the child really saves (the workspace and bank are rewritten).
// Full disk: the same save with the child's file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes past
// it fail with EFBIG, as on a full file system) at several byte counts fails with exit code 1 and an
// error line, and leaves the previous workspace and bank byte for byte as they were, with no staging
// folder or temp file left beside them.
#include "engine/bank/bank_format.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QDirIterator>
#include <QElapsedTimer>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <algorithm>
#include <csignal>
#include <random>
#include <sys/resource.h>

using namespace lorafleet;

namespace {

constexpr int kAdapters = 8;
constexpr int kKills = 30;
constexpr int kChildTimeoutMs = 120'000;

QString guiBinary() {
    // Built next to the CLI (app/lorafleet and app/lorafleet-cli).
    return QFileInfo(QStringLiteral(LORAFLEET_CLI_PATH)).dir().filePath(QStringLiteral("lorafleet"));
}

QProcess* startChild(const QString& ws, const QString& config, QObject* parent,
                     long long fileSizeLimit = -1) {
    auto* p = new QProcess(parent);
    if (fileSizeLimit >= 0)
        p->setChildProcessModifier([fileSizeLimit] {
            ::signal(SIGXFSZ, SIG_IGN);
            const rlimit limit{rlim_t(fileSizeLimit), rlim_t(fileSizeLimit)};
            ::setrlimit(RLIMIT_FSIZE, &limit);
        });
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

// Every file below `dir` (recursively) with its bytes, names relative to `dir`.
QMap<QString, QByteArray> snapshot(const QString& dir) {
    QMap<QString, QByteArray> files;
    QDirIterator it(dir, QDir::Files | QDir::Hidden | QDir::NoDotAndDotDot, QDirIterator::Subdirectories);
    while (it.hasNext()) {
        const QString path = it.next();
        QFile f(path);
        if (f.open(QIODevice::ReadOnly)) files.insert(QDir(dir).relativeFilePath(path), f.readAll());
    }
    return files;
}

// A workspace saved once (fleet imported, compressed, saved as dir/ws.lorafleet + dir/ws.bank).
void makeSavedWorkspace(const QTemporaryDir& dir, const QString& ws) {
    test::writeTinyFleet(dir.filePath("fleet"), kAdapters, 9);
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

} // namespace

class TestSaveCrashConsistency : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { test::isolateSettings(); }

    void killedSaveLeavesAReadableWorkspace() {
        if (!QFileInfo(guiBinary()).isExecutable())
            QFAIL(qPrintable("the console binary is not built: " + guiBinary()));
        QTemporaryDir dir;
        const QString ws = dir.filePath("ws.lorafleet");
        makeSavedWorkspace(dir, ws);
        if (QTest::currentTestFailed()) return;
        checkIntact(ws, "initial save");
        const QString manifest = dir.filePath("ws.bank/manifest.json");

        // Whole runs: they save (the bank is rewritten); the fastest one bounds the kill times.
        const QDateTime before = QFileInfo(manifest).lastModified();
        QTest::qWait(1100); // file times have 1 s granularity on some file systems
        qint64 fullMs = -1;
        for (int run = 0; run < 3; ++run) {
            QElapsedTimer clock;
            clock.start();
            QProcess* whole = startChild(ws, dir.filePath("config"), this);
            QVERIFY(whole->waitForFinished(kChildTimeoutMs));
            fullMs = fullMs < 0 ? clock.elapsed() : std::min(fullMs, clock.elapsed());
            QVERIFY2(whole->exitStatus() == QProcess::NormalExit && whole->exitCode() == 0,
                     whole->readAll().constData());
            delete whole;
        }
        QVERIFY(QFileInfo(manifest).lastModified() > before);
        checkIntact(ws, "uninterrupted run");

        // Kills: a third anywhere in the run, the rest in its second half (where the writes are).
        std::mt19937 rng(1604);
        int killed = 0;
        for (int i = 0; i < kKills; ++i) {
            const double lo = i % 3 == 0 ? 0.05 : 0.5;
            const qint64 at = qint64(std::uniform_real_distribution<double>(lo, 1.0)(rng) * double(fullMs));
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

    void saveOnAFullDiskFailsAndKeepsThePreviousState() {
        if (!QFileInfo(guiBinary()).isExecutable())
            QFAIL(qPrintable("the console binary is not built: " + guiBinary()));
        QTemporaryDir dir;
        const QString ws = dir.filePath("ws.lorafleet");
        makeSavedWorkspace(dir, ws);
        if (QTest::currentTestFailed()) return;
        QDir(dir.path()).mkpath("config");
        // The workspace, its bank and the fleet, before: what every failed save must leave untouched
        // (the child's config folder aside).
        auto state = [&] {
            auto files = snapshot(dir.path());
            for (auto it = files.begin(); it != files.end();)
                it = it.key().startsWith("config/") ? files.erase(it) : std::next(it);
            return files;
        };
        const auto before = state();
        QVERIFY(before.contains("ws.lorafleet"));
        QVERIFY(before.contains("ws.bank/manifest.json"));
        int failed = 0;
        for (const long long limit : {0ll, 512ll, 4096ll, 16384ll}) {
            QProcess* child = startChild(ws, dir.filePath("config"), this, limit);
            QVERIFY(child->waitForFinished(kChildTimeoutMs));
            const QByteArray output = child->readAll();
            const int exitCode = child->exitCode();
            const QString when = QStringLiteral("file-size limit %1 bytes").arg(limit);
            QVERIFY2(child->exitStatus() == QProcess::NormalExit, qPrintable(when + ": crashed"));
            delete child;
            const auto after = state();
            // Failed or not, never a partial state: the workspace and its bank read back whole, and no
            // file appeared or vanished (no staging folder, no temp file).
            checkIntact(ws, when);
            QVERIFY2(after.keys() == before.keys(), qPrintable(when + ": files appeared or vanished: " +
                                                               QStringList(after.keys()).join(", ")));
            if (exitCode == 0) continue; // the limit was large enough for the whole save
            // A failed save says so (exit code 1 and one line) and left every file as it was.
            QVERIFY2(exitCode == 1 && output.contains("lorafleet: "),
                     qPrintable(when + ": no error was reported: " + output));
            QVERIFY2(after == before, qPrintable(when + ": a failed save changed files"));
            ++failed;
        }
        QVERIFY2(failed >= 3, qPrintable(QString("only %1 of 4 limited saves failed").arg(failed)));
    }
};

QTEST_MAIN(TestSaveCrashConsistency)
#include "test_save_crash_consistency.moc"
