// The main window's Help menu and workspace handling: Help > Keyboard Shortcuts lists exactly the menu
// actions that have shortcuts, with their keys (read from the actions, checked here against an
// independent walk over the window's QActions); Help > User Guide opens the README at its console
// section (the URL it would open is checked); Import starts in the folder of the previous import
// (QSettings); New Workspace resets every view (filter, error plots, compress progress).
#include "tests/ui/ui_test_support.hpp"
#include "ui/compress/compress_panel.hpp"
#include "ui/errors/error_view.hpp"
#include "ui/fleet/fleet_view.hpp"
#include "ui/main/main_window.hpp"
#include "ui/main/shortcuts_dialog.hpp"

#include <QLineEdit>
#include <QMenuBar>
#include <QProgressBar>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <qcustomplot.h>

using namespace lorafleet;

class TestHelpAndReset : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { test::isolateSettings(); }

    void shortcutsComeFromTheActions() {
        ui::MainWindow w;
        const auto rows = ui::shortcutRows(w.menuBar());
        // Independent: every QAction reachable from the menu bar's menus with a shortcut.
        QSet<QString> expectedKeys;
        int expected = 0;
        std::function<void(QMenu*)> walk = [&](QMenu* menu) {
            for (QAction* a : menu->actions()) {
                if (a->menu()) {
                    walk(a->menu());
                } else if (!a->isSeparator() && !a->shortcuts().isEmpty()) {
                    ++expected;
                    expectedKeys.insert(a->shortcut().toString(QKeySequence::NativeText));
                }
            }
        };
        for (QAction* top : w.menuBar()->actions())
            if (top->menu()) walk(top->menu());
        QCOMPARE(int(rows.size()), expected);
        QSet<QString> listed;
        bool saveListed = false, guideListed = false;
        for (const auto& r : rows) {
            listed.insert(r.keys.split(", ").front());
            saveListed = saveListed || (r.command == "File > Save" && r.keys.contains("Ctrl+S"));
            guideListed = guideListed || r.command == "Help > User Guide";
            QVERIFY2(!r.command.contains('&'), qPrintable(r.command));
        }
        QCOMPARE(listed, expectedKeys);
        QVERIFY(saveListed);
        QVERIFY(guideListed);
        ui::ShortcutsDialog dialog(w.menuBar());
        QCOMPARE(dialog.table()->rowCount(), expected);
        dialog.resize(560, 640);
        const QString dir = qEnvironmentVariable("LORAFLEET_TEST_SHOTS");
        if (!dir.isEmpty()) QVERIFY(dialog.grab().save(dir + "/shortcuts.png"));
    }

    void userGuideOpensTheReadme() {
        ui::MainWindow w;
        QUrl opened;
        w.setOpenUrl([&](const QUrl& url) {
            opened = url;
            return true;
        });
        w.userGuideAction()->trigger();
        QVERIFY(opened.isLocalFile());
        QCOMPARE(QFileInfo(opened.toLocalFile()).fileName(), QString("README.md"));
        QVERIFY(QFileInfo::exists(opened.toLocalFile()));
        QCOMPARE(opened.fragment(), QString("the-console"));
        QFile readme(opened.toLocalFile());
        QVERIFY(readme.open(QIODevice::ReadOnly));
        QVERIFY(readme.readAll().contains("## The console")); // the section the fragment names
        QCOMPARE(opened, ui::MainWindow::userGuideUrl());
    }

    void importRemembersTheLastFolder() {
        QTemporaryDir root;
        test::writeTinyFleet(root.filePath("fleet"), 2);
        QSettings().remove("import/lastFolder");
        ui::MainWindow w;
        QStringList starts;
        w.setPickImportFolder([&](const QString& start) {
            starts << start;
            return root.filePath("fleet");
        });
        w.importAction()->trigger();
        QVERIFY(test::waitForImport(*w.session()));
        w.importAction()->trigger();
        QCOMPARE(starts.size(), 2);
        QCOMPARE(starts[0], QDir::homePath());
        QCOMPARE(starts[1], root.filePath("fleet"));
        QVERIFY(test::waitForImport(*w.session()));
        // A new window (a new session of the program) starts there too.
        ui::MainWindow again;
        QString start;
        again.setPickImportFolder([&](const QString& s) {
            start = s;
            return QString();
        });
        again.importAction()->trigger();
        QCOMPARE(start, root.filePath("fleet"));
    }

    void newWorkspaceResetsEveryView() {
        QTemporaryDir root;
        test::writeTinyFleet(root.filePath("fleet"), 4);
        ui::MainWindow w;
        w.session()->importPaths({root.filePath("fleet")});
        QVERIFY(test::waitForImport(*w.session()));
        ui::CompressSettings s;
        s.rank = 2;
        s.device = "cpu";
        QSignalSpy finished(w.session()->compressor(), &ui::CompressController::finished);
        QVERIFY(w.session()->compressor()->start(s));
        QVERIFY(finished.wait(240'000));
        w.fleetView()->filterEdit()->setText("adapter");
        QVERIFY(!w.errorView()->showsEmptyState());
        QCOMPARE(w.compressPanel()->progressBar()->value(), 1000);
        QVERIFY(w.session()->undoStack());
        w.session()->newWorkspace();
        QVERIFY(w.fleetView()->filterEdit()->text().isEmpty());
        QVERIFY(w.errorView()->showsEmptyState());
        QCOMPARE(w.errorView()->histogramPlot()->plottableCount(), 0);
        QCOMPARE(w.compressPanel()->progressBar()->value(), 0);
        QVERIFY(w.compressPanel()->resultText().isEmpty());
    }
};

QTEST_MAIN(TestHelpAndReset)
#include "test_help_and_reset.moc"
