// The main window offscreen: every tab can be shown by key, unknown keys are refused, a grab at the
// default size renders a real 1280x800 image (what `lorafleet --screenshot` saves), the status bar names
// the backend and the memory in use, and the demo (what `lorafleet --demo` shows) fills the Fleet tab
// with 200 adapters before ready() — its grab is the documented screenshot — and compresses them, so every
// tab (Fleet, Compress, Clusters, Errors, and the Serve placeholder) renders a full-size, non-blank image
// with data; the cluster map and the fleet table select the same adapters both ways; the About text names
// the library versions. Set LORAFLEET_SCREENSHOT_DIR to keep the PNGs.
#include "engine/bank/compressed_bank.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/clusters/cluster_view.hpp"
#include "ui/compress/compress_panel.hpp"
#include "ui/errors/error_view.hpp"
#include "ui/fleet/adapter_details_pane.hpp"
#include "ui/fleet/fleet_proxy_model.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/fleet_view.hpp"
#include "ui/fleet/module_table_model.hpp"
#include "ui/fleet/problem_model.hpp"
#include "ui/main/about_text.hpp"
#include "ui/main/main_status_bar.hpp"
#include "ui/main/main_window.hpp"
#include "ui/workspace/workspace.hpp"

#include <QAction>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QProgressBar>
#include <QStatusBar>
#include <QTabWidget>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <limits>

namespace {

void keep(const QImage& img, const QString& name) {
    const QString dir = qEnvironmentVariable("LORAFLEET_SCREENSHOT_DIR");
    if (!dir.isEmpty()) QVERIFY(img.save(QDir(dir).filePath(name)));
}

QAction* findAction(QWidget& window, const QString& text) {
    for (QAction* a : window.findChildren<QAction*>())
        if (a->text() == text) return a;
    return nullptr;
}

} // namespace

class TestMainWindow : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { lorafleet::test::isolateSettings(); }

    void tabsByKey() {
        lorafleet::ui::MainWindow w;
        const auto* tabs = w.findChild<QTabWidget*>();
        QVERIFY(tabs);
        const QStringList keys = lorafleet::ui::MainWindow::tabKeys();
        QCOMPARE(keys.size(), tabs->count());
        for (int i = 0; i < keys.size(); ++i) {
            QVERIFY(w.showTab(keys[i]));
            QCOMPARE(tabs->currentIndex(), i);
        }
        QVERIFY(!w.showTab("nonsense"));
    }
    void grabHasDefaultSize() {
        lorafleet::ui::MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QVERIFY(w.isReady());
        const QImage img = w.grab().toImage();
        QVERIFY(img.width() >= 1280 && img.height() >= 800);
        // Not a blank image: the tab bar and status text draw pixels of more than one colour.
        QVERIFY(lorafleet::test::distinctColours(img, 7, std::numeric_limits<int>::max()) > 3);
        keep(img, "empty.png");
    }
    void statusBarNamesBackend() {
        lorafleet::ui::MainWindow w;
        const auto labels = w.statusBar()->findChildren<QLabel*>();
        bool found = false;
        for (const auto* l : labels)
            found |= l->text().startsWith("CPU") || l->text().startsWith("GPU");
        QVERIFY(found);
        QVERIFY(w.mainStatusBar()->memoryText().startsWith("Memory "));
        QVERIFY(w.mainStatusBar()->memoryText().contains("iB"));
    }
    void standardShortcuts() {
        lorafleet::ui::MainWindow w;
        // The platform's binding of each standard key, or the common one where it has none (offscreen).
        const QList<std::pair<QKeySequence::StandardKey, QKeySequence>> wanted = {
            {QKeySequence::New, Qt::CTRL | Qt::Key_N},
            {QKeySequence::Open, Qt::CTRL | Qt::Key_O},
            {QKeySequence::Save, Qt::CTRL | Qt::Key_S},
            {QKeySequence::SaveAs, Qt::CTRL | Qt::SHIFT | Qt::Key_S},
            {QKeySequence::Quit, Qt::CTRL | Qt::Key_Q},
            {QKeySequence::Find, Qt::CTRL | Qt::Key_F},
            {QKeySequence::Delete, Qt::Key_Delete}};
        QList<QKeySequence> present;
        for (const QAction* a : w.findChildren<QAction*>())
            present += a->shortcuts();
        for (const auto& [key, fallback] : wanted) {
            const auto bindings = QKeySequence::keyBindings(key);
            const QKeySequence expected = bindings.isEmpty() ? fallback : bindings.front();
            QVERIFY2(present.contains(expected), qPrintable(expected.toString()));
        }
    }

    void demoFillsFleetTab() {
        lorafleet::ui::MainWindow w;
        QSignalSpy ready(&w, &lorafleet::ui::MainWindow::ready);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.startDemo();
        QVERIFY(!w.isReady());
        // The generator reports in the status bar, with a Cancel button, until the fleet is imported.
        auto* progress = w.mainStatusBar()->findChild<QProgressBar*>();
        QVERIFY(progress && progress->isVisible());
        QTest::qWait(300);
        keep(w.grab().toImage(), "demo_progress.png");
        QTRY_VERIFY_WITH_TIMEOUT(w.isReady(), 300000);
        QVERIFY(!progress->isVisible());
        QVERIFY(ready.count() >= 1);
        QCOMPARE(w.session()->store()->size(), 200);
        QVERIFY(w.session()->store()->problems().isEmpty());
        QCOMPARE(w.session()->workspace()->data().baseModel, QStringLiteral("tinystories-656k"));
        QVERIFY(!w.isWindowModified()); // a generated demo has nothing to save
        // The first adapter is selected and its module norms are shown.
        QCOMPARE(w.fleetView()->selectedStoreRows().size(), 1);
        QVERIFY(w.fleetView()->details()->moduleModel()->hasNorms());

        QApplication::processEvents();
        const QImage img = w.grab().toImage();
        QVERIFY(img.width() >= 1280 && img.height() >= 800);
        QVERIFY(lorafleet::test::distinctColours(img, 7, std::numeric_limits<int>::max()) > 20);
        keep(img, "demo_fleet.png");

        // Filter, then remove the selection with the Delete action (Edit > Remove Selected Adapters).
        w.fleetView()->filterEdit()->setText("adapter-019");
        QCOMPARE(w.fleetView()->proxy()->rowCount(), 10);
        // adapter-0000 is filtered out: the details pane no longer shows it.
        QCOMPARE(w.fleetView()->selectedStoreRows().size(), 0);
        QVERIFY(!w.fleetView()->details()->moduleModel()->adapter());
        QApplication::processEvents(); // layout of the counts label
        keep(w.grab().toImage(), "demo_filtered.png");
        w.fleetView()->table()->selectAll();
        QCOMPARE(w.fleetView()->selectedStoreRows().size(), 10);
        QAction* remove = findAction(w, "&Remove Selected Adapters");
        QVERIFY(remove);
        QVERIFY(remove->isEnabled());
        int asked = 0;
        w.fleetView()->setConfirmRemoval([&asked](int count, const QStringList&) {
            asked = count;
            return true;
        });
        remove->trigger();
        QCOMPARE(asked, 10);
        QCOMPARE(w.session()->store()->size(), 190);
        QCOMPARE(w.fleetView()->proxy()->rowCount(), 0);
        QVERIFY(w.isWindowModified());
        QCOMPARE(w.session()->workspace()->data().adapterDirs.size(), 190);
        w.session()->workspace()->markClean(); // the window is closed without asking
    }

    void everyTabRendersAfterDemo() {
        lorafleet::ui::MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.startDemo();
        QTRY_VERIFY_WITH_TIMEOUT(w.isReady(), 300000);
        const auto bank = w.session()->bank();
        QVERIFY2(bank, "the demo compresses its fleet");
        QCOMPARE(int(bank->adapters.size()), 200);
        QCOMPARE(bank->clusters, 5);
        QVERIFY(!w.isWindowModified());
        QVERIFY(w.clusterView()->bank() == bank.get());
        QVERIFY(w.errorView()->bank() == bank.get());
        QVERIFY(!w.clusterView()->showsEmptyState());
        QVERIFY(!w.errorView()->showsEmptyState());
        // The Fleet table shows the bank's clusters.
        const auto* store = w.session()->store();
        for (int r = 0; r < store->size(); ++r)
            QCOMPARE(store->entry(r).cluster,
                     bank->adapters[*bank->find_adapter(store->entry(r).adapter->name)].cluster);
        QVERIFY(w.compressPanel()->resultText().contains("Clusters\t5"));
        for (QAction* a : w.findChildren<QAction*>())
            if (a->text().startsWith("Export ")) QVERIFY2(a->isEnabled(), qPrintable(a->text()));

        for (const QString& key : lorafleet::ui::MainWindow::tabKeys()) {
            QVERIFY(w.showTab(key));
            QApplication::processEvents();
            const QImage img = w.grab().toImage();
            QVERIFY2(img.width() >= 1280 && img.height() >= 800, qPrintable(key));
            // Views with data draw many colours; the Serve placeholder only its text.
            const int minColours = key == "serve" ? 3 : 20;
            QVERIFY2(lorafleet::test::distinctColours(img, 7, std::numeric_limits<int>::max()) > minColours,
                     qPrintable(QString("%1: %2 colours")
                                    .arg(key)
                                    .arg(lorafleet::test::distinctColours(img, 7,
                                                                          std::numeric_limits<int>::max()))));
            keep(img, key + ".png");
        }

        // Selection follows between the table and the cluster map, by adapter name, both ways.
        w.fleetView()->table()->selectRow(3);
        const QString name =
            QString::fromStdString(store->entry(w.fleetView()->selectedStoreRows().front()).adapter->name);
        QCOMPARE(w.clusterView()->selectedAdapters(), QStringList{name});
        const QStringList picked{QString::fromStdString(bank->adapters[7].name),
                                 QString::fromStdString(bank->adapters[9].name)};
        emit w.clusterView()->adaptersSelected(picked); // what an operator's click on the map emits
        QStringList selected;
        for (int row : w.fleetView()->selectedStoreRows())
            selected << QString::fromStdString(store->entry(row).adapter->name);
        selected.sort();
        QStringList want = picked;
        want.sort();
        QCOMPARE(selected, want);
    }

    void exportActionsFollowTheBank() {
        lorafleet::ui::MainWindow w;
        const QList<std::pair<QString, QKeySequence>> exports = {
            {"Export &Bank\u2026", QKeySequence(Qt::CTRL | Qt::Key_E)},
            {"Export &PEFT Adapters\u2026", QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E)},
            {"Export Error &Report\u2026", QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_R)}};
        for (const auto& [text, key] : exports) {
            QAction* a = findAction(w, text);
            QVERIFY2(a, qPrintable(text));
            QCOMPARE(a->shortcut(), key);
            QVERIFY(!a->isEnabled()); // no bank yet
        }
        QVERIFY(w.clusterView()->showsEmptyState());
        QVERIFY(w.errorView()->showsEmptyState());
        auto bank = std::make_shared<const lorafleet::bank::compressed_bank>(
            lorafleet::test::make_random_bank(lorafleet::compress::jd_method::full, 3));
        w.session()->setBank(bank, /*unsaved=*/true);
        for (const auto& [text, key] : exports)
            QVERIFY(findAction(w, text)->isEnabled());
        QVERIFY(w.clusterView()->bank() == bank.get());
        QVERIFY(w.errorView()->bank() == bank.get());
        QVERIFY(w.isWindowModified()); // an unsaved bank is an unsaved change
        w.session()->newWorkspace();
        QVERIFY(!w.session()->bank());
        QVERIFY(w.clusterView()->showsEmptyState());
        QVERIFY(!findAction(w, "Export &Bank\u2026")->isEnabled());
        QVERIFY(!w.isWindowModified());
    }

    void aboutNamesVersions() {
        const QString text = lorafleet::ui::aboutText();
        QVERIFY(text.contains(QString::fromLatin1(qVersion())));
        QVERIFY(text.contains("CUDA"));
        QVERIFY(text.contains("OpenBLAS"));
        QVERIFY(text.contains("sentencepiece"));
        QVERIFY2(!lorafleet::ui::openBlasVersion().isEmpty() &&
                     lorafleet::ui::openBlasVersion().at(0).isDigit(),
                 qPrintable(lorafleet::ui::openBlasVersion()));
        QVERIFY2(lorafleet::ui::sentencePieceVersion().at(0).isDigit(),
                 qPrintable(lorafleet::ui::sentencePieceVersion()));
    }

    void problemsPaneListsFailures() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        lorafleet::test::writeTinyFleet(dir.filePath("fleet"), 6);
        lorafleet::test::writeTruncatedCopy(dir.filePath("fleet/adapter-0000"),
                                            dir.filePath("broken-truncated"));
        QVERIFY(QDir(dir.path()).mkpath("weights-missing"));
        QVERIFY(QFile::copy(dir.filePath("fleet/adapter-0001/adapter_config.json"),
                            dir.filePath("weights-missing/adapter_config.json")));

        lorafleet::ui::MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.session()->importPaths({dir.path()});
        QTRY_VERIFY_WITH_TIMEOUT(w.isReady(), 60000);
        QCOMPARE(w.session()->store()->size(), 6);
        QCOMPARE(w.fleetView()->problemModel()->rowCount(), 2);
        QTableView* problems = nullptr;
        for (QTableView* t : w.findChildren<QTableView*>())
            if (t->model() == w.fleetView()->problemModel()) problems = t;
        QVERIFY(problems && problems->isVisible());
        for (int r = 0; r < 2; ++r) {
            const QString reason = w.fleetView()
                                       ->problemModel()
                                       ->index(r, lorafleet::ui::ProblemModel::Reason)
                                       .data()
                                       .toString();
            QVERIFY2(!reason.isEmpty() && !reason.contains('\n'), qPrintable(reason));
        }
        QVERIFY(w.mainStatusBar()->operationText().startsWith("Imported 6 adapters, 2 problems"));

        QSignalSpy norms(w.fleetView()->details(), &lorafleet::ui::AdapterDetailsPane::normsReady);
        w.fleetView()->table()->selectRow(2);
        QVERIFY(norms.wait(10000));
        QApplication::processEvents();
        keep(w.grab().toImage(), "problems.png");
        w.session()->workspace()->markClean();
    }

    void deleteKeyRemovesOnlyFromTheTable() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        lorafleet::test::writeTinyFleet(dir.filePath("fleet"), 3);
        lorafleet::ui::MainWindow w;
        w.show();
        QApplication::setActiveWindow(&w);
        QVERIFY(QTest::qWaitForWindowActive(&w));
        w.session()->importPaths({dir.filePath("fleet")});
        QTRY_VERIFY_WITH_TIMEOUT(w.isReady(), 60000);
        QCOMPARE(w.session()->store()->size(), 3);
        QTableView* table = w.fleetView()->table();
        table->selectRow(1);
        // In the filter box Delete edits the text...
        QLineEdit* filter = w.fleetView()->filterEdit();
        filter->setFocus();
        QTRY_VERIFY(filter->hasFocus());
        QTest::keyClicks(filter, "adapter");
        filter->setCursorPosition(0);
        QTest::keyClick(filter, Qt::Key_Delete);
        QCOMPARE(filter->text(), QStringLiteral("dapter"));
        QCOMPARE(w.session()->store()->size(), 3);
        // ... in the table it removes the selected adapter (after asking), and the next row becomes current.
        QStringList asked;
        w.fleetView()->setConfirmRemoval([&asked](int count, const QStringList& names) {
            asked = names;
            return count == 1;
        });
        filter->clear();
        table->setFocus();
        QTRY_VERIFY(table->hasFocus());
        table->selectRow(1);
        QTest::keyClick(table, Qt::Key_Delete);
        QCOMPARE(asked, QStringList{QStringLiteral("adapter-0001")});
        QCOMPARE(w.session()->store()->size(), 2);
        QCOMPARE(w.session()->store()->entry(0).summary.name, QStringLiteral("adapter-0000"));
        QCOMPARE(w.session()->store()->entry(1).summary.name, QStringLiteral("adapter-0002"));
        QCOMPARE(w.fleetView()->selectedStoreRows(), QList<int>{1});
        w.session()->workspace()->markClean();
    }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
