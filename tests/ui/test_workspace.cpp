// The workspace document: JSON round trip (base preset, adapter folders relative inside the workspace's
// folder and absolute outside it, compression settings, bank), refusal of foreign or newer files with a
// one-line reason, exact dirty tracking, the window title's unsaved marker, recent files, and opening a
// saved workspace through the Session re-imports its adapters without making it dirty.
#include "tests/ui/ui_test_support.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/main/main_window.hpp"
#include "ui/workspace/recent_files.hpp"
#include "ui/workspace/workspace.hpp"

#include <QJsonArray>
#include <QJsonDocument>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

using namespace lorafleet;
using ui::Workspace;
using ui::WorkspaceData;

namespace {

void writeFile(const QString& path, const QByteArray& bytes) {
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(bytes);
}

} // namespace

class TestWorkspace : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_dir;
    QTemporaryDir m_elsewhere;

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_dir.isValid() && m_elsewhere.isValid());
        test::writeTinyFleet(m_dir.filePath("fleet"), 3);
    }

    void roundTrip() {
        WorkspaceData data;
        data.baseModel = "tinystories-656k";
        data.adapterDirs = {QDir::cleanPath(m_dir.filePath("fleet/adapter-0000")),
                            QDir::cleanPath(m_elsewhere.filePath("far/away"))};
        data.compression = QJsonObject{{"method", "jd-diag"}, {"rank", 16}};
        data.bankPath = QDir::cleanPath(m_dir.filePath("fleet.bank"));
        Workspace ws;
        ws.reset(data);
        QVERIFY(!ws.isDirty());
        const QString path = m_dir.filePath("project.lorafleet");
        QString error;
        QVERIFY2(ws.save(path, &error), qPrintable(error));
        QCOMPARE(ws.filePath(), QFileInfo(path).absoluteFilePath());
        QCOMPARE(ws.displayName(), QStringLiteral("project.lorafleet"));

        // On disk: paths inside the workspace folder are relative, others absolute.
        QFile file(path);
        QVERIFY(file.open(QIODevice::ReadOnly));
        const QJsonObject root = QJsonDocument::fromJson(file.readAll()).object();
        QCOMPARE(root.value("format").toString(), QStringLiteral("lorafleet-workspace"));
        QCOMPARE(root.value("version").toInt(), Workspace::kFormatVersion);
        QCOMPARE(root.value("base_model").toObject().value("preset").toString(),
                 QStringLiteral("tinystories-656k"));
        const QJsonArray adapters = root.value("adapters").toArray();
        QCOMPARE(adapters.at(0).toString(), QStringLiteral("fleet/adapter-0000"));
        QCOMPARE(adapters.at(1).toString(), data.adapterDirs[1]);
        QCOMPARE(root.value("bank").toString(), QStringLiteral("fleet.bank"));

        const auto back = Workspace::read(path, &error);
        QVERIFY2(back.has_value(), qPrintable(error));
        QCOMPARE(back->baseModel, data.baseModel);
        QCOMPARE(back->adapterDirs, data.adapterDirs);
        QCOMPARE(back->compression, data.compression);
        QCOMPARE(back->bankPath, data.bankPath);
        QVERIFY(*back == data);

        // A config.json base model is stored as a path.
        ws.setBaseModel(m_dir.filePath("model/config.json"));
        QVERIFY(ws.save(path, &error));
        QCOMPARE(Workspace::read(path, &error)->baseModel,
                 QDir::cleanPath(m_dir.filePath("model/config.json")));
    }

    void refusesBadFiles_data() {
        QTest::addColumn<QByteArray>("content");
        QTest::addColumn<QString>("expected");
        QTest::newRow("not json") << QByteArray("{oops") << "not valid JSON";
        QTest::newRow("array") << QByteArray("[1, 2]") << "not a LoRA Fleet workspace";
        QTest::newRow("foreign") << QByteArray(R"({"format": "something-else", "version": 1})")
                                 << "not a LoRA Fleet workspace";
        QTest::newRow("newer") << QByteArray(R"({"format": "lorafleet-workspace", "version": 99})")
                               << "newer LoRA Fleet";
        QTest::newRow("bad preset")
            << QByteArray(
                   R"({"format": "lorafleet-workspace", "version": 1, "base_model": {"preset": "gpt-9"}})")
            << "unknown base model preset";
        QTest::newRow("bad adapters")
            << QByteArray(R"({"format": "lorafleet-workspace", "version": 1, "adapters": [1]})")
            << "\"adapters\"";
    }
    void refusesBadFiles() {
        QFETCH(QByteArray, content);
        QFETCH(QString, expected);
        const QString path = m_dir.filePath("bad.lorafleet");
        writeFile(path, content);
        QString error;
        QVERIFY(!Workspace::read(path, &error).has_value());
        QVERIFY2(error.contains(expected), qPrintable(error));
        QVERIFY(!error.contains('\n'));
        QVERIFY(!Workspace::read(m_dir.filePath("missing.lorafleet"), &error).has_value());
    }

    void saveFailureLeavesDocumentDirty() {
        Workspace ws;
        ws.setBaseModel("tinystories-656k");
        QVERIFY(ws.isDirty());
        QString error;
        QVERIFY(!ws.save(m_dir.filePath("no/such/folder/x.lorafleet"), &error));
        QVERIFY(!error.isEmpty());
        QVERIFY(ws.isDirty());
        QVERIFY(ws.filePath().isEmpty());
    }

    void dirtyTrackingIsExact() {
        Workspace ws;
        QSignalSpy dirty(&ws, &Workspace::dirtyChanged);
        QVERIFY(!ws.isDirty());
        ws.addAdapterDirs({"/a", "/b"});
        QVERIFY(ws.isDirty());
        ws.addAdapterDirs({"/a"}); // already there: no change
        QCOMPARE(ws.data().adapterDirs.size(), 2);
        ws.removeAdapterDirs({"/a", "/b"}); // back to what was saved
        QVERIFY(!ws.isDirty());
        ws.setCompressionSettings(QJsonObject{{"k", 4}});
        QVERIFY(ws.isDirty());
        ws.markClean();
        QVERIFY(!ws.isDirty());
        ws.setCompressionSettings(QJsonObject{{"k", 4}}); // same value
        QVERIFY(!ws.isDirty());
        QCOMPARE(dirty.count(), 4);
    }

    void titleShowsUnsavedMarker() {
        ui::MainWindow window;
        QVERIFY(window.windowTitle().startsWith("Untitled[*]"));
        QVERIFY(!window.isWindowModified());
        window.session()->importPaths({m_dir.filePath("fleet/adapter-0000")});
        QVERIFY(test::waitForImport(*window.session()));
        QCOMPARE(window.session()->store()->size(), 1);
        QVERIFY(window.isWindowModified());
        const QString path = m_dir.filePath("titled.lorafleet");
        QString error;
        QVERIFY(window.session()->saveWorkspace(path, &error));
        QVERIFY(!window.isWindowModified());
        QVERIFY(window.windowTitle().startsWith("titled.lorafleet[*]"));
        // Removing an adapter is an unsaved change again.
        window.session()->removeRows({0});
        QVERIFY(window.isWindowModified());
    }

    void sessionOpenReimports() {
        const QString path = m_dir.filePath("session.lorafleet");
        QString error;
        {
            ui::Session session;
            QVERIFY(session.setBaseModel("tinystories-656k", &error));
            session.importPaths({m_dir.filePath("fleet")});
            QVERIFY(test::waitForImport(session));
            QCOMPARE(session.store()->size(), 3);
            QVERIFY(session.saveWorkspace(path, &error));
            QVERIFY(!session.workspace()->isDirty());
        }
        ui::Session session;
        QVERIFY2(session.openWorkspace(path, &error), qPrintable(error));
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 3);
        QCOMPARE(session.workspace()->data().baseModel, QStringLiteral("tinystories-656k"));
        QVERIFY(session.importer()->baseModel().has_value());
        QCOMPARE(session.store()->dirs(), session.workspace()->data().adapterDirs);
        QVERIFY(!session.workspace()->isDirty());
        // A failed open changes nothing.
        QVERIFY(!session.openWorkspace(m_dir.filePath("missing.lorafleet"), &error));
        QCOMPARE(session.store()->size(), 3);
        QCOMPARE(session.workspace()->filePath(), QFileInfo(path).absoluteFilePath());
        // New: empty, untitled, clean.
        session.newWorkspace();
        QCOMPARE(session.store()->size(), 0);
        QVERIFY(session.workspace()->filePath().isEmpty());
        QVERIFY(!session.workspace()->isDirty());
    }

    void parentFoldersAreExpandedOnOpen() {
        const QString path = m_dir.filePath("handwritten.lorafleet");
        writeFile(path, R"({"format": "lorafleet-workspace", "version": 1, "base_model": null,
                           "adapters": ["fleet", "gone/adapter-x"]})");
        ui::Session session;
        QString error;
        QVERIFY2(session.openWorkspace(path, &error), qPrintable(error));
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 3);
        QCOMPARE(session.store()->problems().size(), 1);
        QStringList expected = session.store()->dirs();
        expected << QDir::cleanPath(m_dir.filePath("gone/adapter-x")); // failed: kept, not silently dropped
        QCOMPARE(session.workspace()->data().adapterDirs, expected);
        QVERIFY(!session.workspace()->isDirty());
        QVERIFY(session.store()->dirs().front().endsWith("fleet/adapter-0000"));
    }

    void windowOpensWorkspaceAndRemembersIt() {
        const QString path = m_dir.filePath("session.lorafleet");
        ui::RecentFiles recent;
        recent.clear();
        ui::MainWindow window;
        QString error;
        QVERIFY2(window.openWorkspaceFile(path, &error), qPrintable(error));
        QSignalSpy ready(&window, &ui::MainWindow::ready);
        QTRY_VERIFY_WITH_TIMEOUT(window.isReady(), 60000);
        QCOMPARE(window.session()->store()->size(), 3);
        QCOMPARE(recent.files().value(0), QFileInfo(path).absoluteFilePath());
        QVERIFY(window.windowTitle().startsWith("session.lorafleet"));
        recent.remove(path);
        QVERIFY(recent.files().isEmpty());
    }
};

QTEST_MAIN(TestWorkspace)
#include "test_workspace.moc"
