// The console never loses what the operator has (each case is a probe that found a loss on an earlier
// build): Export Bank is a copy and never becomes the workspace's bank, Save / Save As write NAME.bank
// beside the workspace and leave every other bank as it was; adapter names are unique (a clash is refused
// with the names listed, or imported renamed NAME-2); adapters added after the bank show no cluster or
// error and the bank reads as out of date (Compress tab, status bar) with exact added / removed counts;
// imports are refused while a compression runs and compression while an import runs; removing adapters
// asks first and Edit > Undo / Redo restores / removes exactly them; a saved demo workspace carries its
// adapters in NAME.adapters/ and reopens whole after the temporary folder is gone.
#include "engine/bank/bank_format.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/text_format.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/compress/compress_panel.hpp"
#include "ui/export/export_controller.hpp"
#include "ui/fleet/fleet_model.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/fleet_view.hpp"
#include "ui/main/main_status_bar.hpp"
#include "ui/main/main_window.hpp"
#include "ui/workspace/demo_workspace.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QAction>
#include <QDropEvent>
#include <QMimeData>
#include <QPushButton>
#include <QTableView>
#include <QTemporaryDir>
#include <QUndoStack>
#include <QtTest/QtTest>

#include <cmath>
#include <filesystem>

using namespace lorafleet;
using Outcome = ui::EngineJob::Outcome;
namespace fs = std::filesystem;

namespace {

constexpr int kAdapters = 12;

ui::CompressSettings settingsWithRank(int rank) {
    ui::CompressSettings s;
    s.method = compress::jd_method::full;
    s.rank = rank;
    s.clusters = 2;
    s.seed = 77;
    s.device = "cpu";
    return s;
}

bool compressFleet(ui::Session& session, const ui::CompressSettings& settings) {
    QSignalSpy finished(session.compressor(), &ui::CompressController::finished);
    QString error;
    if (!session.compressor()->start(settings, &error)) {
        qWarning("compress: %s", qPrintable(error));
        return false;
    }
    return finished.wait(240000) && finished.at(0).at(0).value<Outcome>() == Outcome::Succeeded;
}

bool importAll(ui::Session& session, const QStringList& paths,
               ui::DuplicateNames policy = ui::DuplicateNames::Refuse) {
    QSignalSpy finished(session.importer(), &ui::ImportController::finished);
    if (!session.importPaths(paths, policy)) return false;
    return test::waitForImport(session) && finished.count() >= 1;
}

// Copies adapter folders of `fleet` to `to`/<new name>: the same adapters under other names.
void copyAs(const QString& fleet, const QString& to, const QStringList& from, const QStringList& names) {
    for (int i = 0; i < from.size(); ++i) {
        fs::create_directories(fs::path(to.toStdString()));
        fs::copy(fs::path(fleet.toStdString()) / from[i].toStdString(),
                 fs::path(to.toStdString()) / names[i].toStdString(), fs::copy_options::recursive);
    }
}

int rankOnDisk(const QString& bankDir) {
    return bank::read_bank(bankDir.toStdString(), {true, false}).rank;
}

int rowOfName(const ui::FleetStore& store, const QString& name) {
    for (int r = 0; r < store.size(); ++r)
        if (store.entry(r).summary.name == name) return r;
    return -1;
}

} // namespace

class TestNoLoss : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_dir;
    QString fleetDir() const { return m_dir.filePath("fleet"); }

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_dir.isValid());
        test::writeTinyFleet(fleetDir(), kAdapters, 5);
    }

    // Probe 1: export1.bank (rank 4) -> recompress at rank 2 -> Save As ws1: export1.bank still holds the
    // rank-4 bank and ws1.bank the rank-2 one; Save As ws2 writes ws2.bank and leaves ws1.bank alone.
    void exportAndSaveNeverOverwriteAnotherBank() {
        QTemporaryDir out;
        ui::Session session;
        QVERIFY(importAll(session, {fleetDir()}));
        QVERIFY(compressFleet(session, settingsWithRank(4)));
        ui::ExportController exporter(&session);
        const QString exported = out.filePath("export1.bank");
        QSignalSpy exportDone(&exporter, &ui::ExportController::finished);
        QVERIFY(exporter.exportBank(exported, false));
        QVERIFY(exportDone.wait(60000));
        QVERIFY2(exportDone.at(0).at(0).toBool(), qPrintable(exportDone.at(0).at(1).toString()));
        QVERIFY(session.workspace()->data().bankPath.isEmpty());

        QVERIFY(compressFleet(session, settingsWithRank(2)));
        QString error;
        QVERIFY2(session.saveWorkspace(out.filePath("ws1.lorafleet"), &error), qPrintable(error));
        QCOMPARE(rankOnDisk(exported), 4);
        QCOMPARE(rankOnDisk(out.filePath("ws1.bank")), 2);
        QCOMPARE(session.workspace()->data().bankPath, out.filePath("ws1.bank"));

        // Save As another name: a new NAME.bank with the same bank; ws1.bank is not touched.
        const auto ws1Manifest = QFileInfo(out.filePath("ws1.bank/manifest.json")).lastModified();
        QVERIFY(compressFleet(session, settingsWithRank(3)));
        QVERIFY2(session.saveWorkspace(out.filePath("ws2.lorafleet"), &error), qPrintable(error));
        QCOMPARE(rankOnDisk(out.filePath("ws2.bank")), 3);
        QCOMPARE(rankOnDisk(out.filePath("ws1.bank")), 2);
        QCOMPARE(QFileInfo(out.filePath("ws1.bank/manifest.json")).lastModified(), ws1Manifest);
        QCOMPARE(rankOnDisk(exported), 4);
        const auto saved = ui::Workspace::read(out.filePath("ws2.lorafleet"), &error);
        QVERIFY2(saved, qPrintable(error));
        QCOMPARE(saved->bankPath, out.filePath("ws2.bank"));

        // A workspace whose bank was read from elsewhere gets its own NAME.bank on Save As.
        ui::Session reopened;
        QVERIFY2(reopened.openWorkspace(out.filePath("ws1.lorafleet"), &error), qPrintable(error));
        QTRY_VERIFY_WITH_TIMEOUT(!reopened.isBusy(), 60000);
        QVERIFY(reopened.bank());
        QVERIFY2(reopened.saveWorkspace(out.filePath("copy.lorafleet"), &error), qPrintable(error));
        QCOMPARE(rankOnDisk(out.filePath("copy.bank")), 2);
        QCOMPARE(reopened.workspace()->data().bankPath, out.filePath("copy.bank"));
        QCOMPARE(QFileInfo(out.filePath("ws1.bank/manifest.json")).lastModified(), ws1Manifest);
    }

    // Probe 2: the same names imported again from another folder.
    void duplicateNamesRefusedWithTheirNames() {
        QTemporaryDir other;
        const QStringList names = {"adapter-0000", "adapter-0001", "adapter-0002"};
        copyAs(fleetDir(), other.filePath("copy"), names, names);
        ui::Session session;
        QVERIFY(importAll(session, {fleetDir()}));
        QVERIFY(importAll(session, {other.filePath("copy")}, ui::DuplicateNames::Refuse));
        QCOMPARE(session.store()->size(), kAdapters);
        const ui::ImportReport& report = session.importer()->lastReport();
        QCOMPARE(report.added, 0);
        QCOMPARE(report.refusedNames, names);
        const QString summary = report.summary();
        QVERIFY2(summary.contains("refused 3 adapters") &&
                     summary.contains("adapter-0000, adapter-0001, adapter-0002"),
                 qPrintable(summary));
        QVERIFY(!summary.contains('\n'));
        // Ask (the console's default) refuses the same way; the window then asks whether to rename.
        QCOMPARE(session.importer()->duplicateNames(), ui::DuplicateNames::Ask);
    }

    void duplicateNamesRenamedOnRequest() {
        QTemporaryDir other;
        copyAs(fleetDir(), other.filePath("copy"), {"adapter-0000", "adapter-0001"},
               {"adapter-0000", "adapter-0001"});
        copyAs(fleetDir(), other.filePath("copy2"), {"adapter-0000"}, {"adapter-0000"});
        ui::Session session;
        session.importer()->setDuplicateNames(ui::DuplicateNames::Rename);
        QVERIFY(importAll(session, {fleetDir()}, ui::DuplicateNames::Rename));
        QVERIFY(importAll(session, {other.filePath("copy")}, ui::DuplicateNames::Rename));
        QVERIFY(importAll(session, {other.filePath("copy2")}, ui::DuplicateNames::Rename));
        QCOMPARE(session.store()->size(), kAdapters + 3);
        QSet<QString> seen;
        for (const auto& e : session.store()->entries()) {
            QCOMPARE(e.summary.name, QString::fromStdString(e.adapter->name));
            QVERIFY2(!seen.contains(e.summary.name), qPrintable(e.summary.name));
            seen.insert(e.summary.name);
        }
        QVERIFY(seen.contains("adapter-0000-2") && seen.contains("adapter-0001-2") &&
                seen.contains("adapter-0000-3"));
        QVERIFY(session.importer()->lastReport().summary().contains(
            QStringLiteral("adapter-0000 \u2192 adapter-0000-3")));
    }

    // The window asks after a refused clash; answering "rename" imports them as NAME-2.
    void windowAsksToRename() {
        QTemporaryDir other;
        copyAs(fleetDir(), other.filePath("copy"), {"adapter-0003"}, {"adapter-0003"});
        ui::MainWindow w;
        QStringList asked;
        w.setAskRename([&asked](const QStringList& names) {
            asked = names;
            return true;
        });
        QVERIFY(importAll(*w.session(), {fleetDir()}, ui::DuplicateNames::Ask));
        QVERIFY(w.session()->importPaths({other.filePath("copy")}));
        QTRY_VERIFY_WITH_TIMEOUT(!w.session()->isBusy() && w.session()->store()->size() == kAdapters + 1,
                                 60000);
        QCOMPARE(asked, QStringList{"adapter-0003"});
        QVERIFY(rowOfName(*w.session()->store(), "adapter-0003-2") >= 0);
    }

    // Probe 2: adapters added after the bank never show its results, and the bank reads as out of date.
    void staleBankIsShownAndCounted() {
        QTemporaryDir other;
        // Same weights as bank members, other names; and one with a bank member's name (after it is removed).
        copyAs(fleetDir(), other.filePath("extra"), {"adapter-0000", "adapter-0001", "adapter-0002"},
               {"new-0", "new-1", "new-2"});
        copyAs(fleetDir(), other.filePath("again"), {"adapter-0005"}, {"adapter-0005"});
        ui::MainWindow w;
        ui::Session& session = *w.session();
        ui::CompressPanel* panel = w.compressPanel();
        QVERIFY(importAll(session, {fleetDir()}));
        QVERIFY(compressFleet(session, settingsWithRank(4)));
        QVERIFY(!session.bankStaleness().isStale());
        QVERIFY(panel->staleText().isEmpty());
        QVERIFY(w.mainStatusBar()->bankStaleText().isEmpty());
        for (const auto& e : session.store()->entries())
            QVERIFY(e.hasCluster() && e.hasError());

        QVERIFY(importAll(session, {other.filePath("extra")}));
        QCOMPARE(session.bankStaleness().added, 3);
        QCOMPARE(session.bankStaleness().removed, 0);
        QVERIFY2(panel->staleText().contains("3 adapters added, 0 removed"), qPrintable(panel->staleText()));
        QVERIFY2(w.mainStatusBar()->bankStaleText().contains("3 adapters added"),
                 qPrintable(w.mainStatusBar()->bankStaleText()));
        ui::FleetModel* model = w.fleetView()->model();
        const int fresh = rowOfName(*session.store(), "new-0");
        QVERIFY(fresh >= 0);
        QCOMPARE(model->index(fresh, ui::FleetModel::Cluster).data().toString(), QStringLiteral("\u2014"));
        QCOMPARE(model->index(fresh, ui::FleetModel::Error).data().toString(),
                 QStringLiteral("not compressed"));
        const int member = rowOfName(*session.store(), "adapter-0004");
        QCOMPARE(model->index(member, ui::FleetModel::Error).data().toString(),
                 ui::formatError(session.store()->entry(member).error)); // the one error format

        // Remove a bank member, import another adapter under its name: it is not the bank's adapter.
        w.fleetView()->setConfirmRemoval([](int, const QStringList&) { return true; });
        session.removeRows({rowOfName(*session.store(), "adapter-0005")});
        QCOMPARE(session.bankStaleness().removed, 1);
        QVERIFY(importAll(session, {other.filePath("again")}));
        const int impostor = rowOfName(*session.store(), "adapter-0005");
        QVERIFY(impostor >= 0);
        QVERIFY(!session.store()->entry(impostor).hasCluster());
        QVERIFY(!session.store()->entry(impostor).hasError());
        QCOMPARE(session.bankStaleness().added, 4);
        QCOMPARE(session.bankStaleness().removed, 1);
        QVERIFY2(panel->staleText().contains("4 adapters added, 1 removed"), qPrintable(panel->staleText()));

        // Compressing again makes it current.
        QVERIFY(compressFleet(session, settingsWithRank(4)));
        QVERIFY(!session.bankStaleness().isStale());
        QVERIFY(panel->staleText().isEmpty());
        QVERIFY(w.mainStatusBar()->bankStaleText().isEmpty());
        QVERIFY(session.store()->entry(rowOfName(*session.store(), "new-0")).hasCluster());
    }

    void importAndCompressExcludeEachOther() {
        ui::MainWindow w;
        ui::Session& session = *w.session();
        QVERIFY(importAll(session, {fleetDir()}));

        // While a compression runs: no import (menu action off, the call refused, a drop answered).
        ui::CompressSettings slow = settingsWithRank(2);
        slow.clusters = 0;
        slow.targetError = 1e-12;
        QSignalSpy finished(session.compressor(), &ui::CompressController::finished);
        QVERIFY(session.compressor()->start(slow));
        QVERIFY(!w.importAction()->isEnabled());
        QString error;
        QTemporaryDir other;
        copyAs(fleetDir(), other.filePath("x"), {"adapter-0000"}, {"late"});
        QVERIFY(!session.importPaths({other.filePath("x")}, &error));
        QVERIFY2(error.contains("compression is running"), qPrintable(error));
        QMimeData mime;
        mime.setUrls({QUrl::fromLocalFile(other.filePath("x/late"))});
        QDropEvent drop(QPointF(w.rect().center()), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(&w, &drop);
        QVERIFY2(w.mainStatusBar()->operationText().startsWith("Import refused"),
                 qPrintable(w.mainStatusBar()->operationText()));
        QVERIFY(!session.importer()->isBusy());
        session.compressor()->cancel();
        QTRY_VERIFY_WITH_TIMEOUT(finished.count() >= 1, 120000);
        QCOMPARE(session.store()->size(), kAdapters);
        QVERIFY(w.importAction()->isEnabled());

        // While an import runs: no compression (the run button off, the call refused).
        QVERIFY(session.importPaths({other.filePath("x")}));
        QVERIFY(session.importer()->isBusy());
        QVERIFY(!w.compressPanel()->runButton()->isEnabled());
        QVERIFY(!session.compressor()->start(settingsWithRank(2), &error));
        QVERIFY2(error.contains("import is running"), qPrintable(error));
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), kAdapters + 1);
        QTRY_VERIFY(w.compressPanel()->runButton()->isEnabled());
    }

    void removeAsksAndUndoRestores() {
        QTemporaryDir out;
        ui::MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        ui::Session& session = *w.session();
        QVERIFY(importAll(session, {fleetDir()}));
        QVERIFY(compressFleet(session, settingsWithRank(4)));
        QString error;
        QVERIFY2(session.saveWorkspace(out.filePath("ws.lorafleet"), &error), qPrintable(error));
        QVERIFY(!session.workspace()->isDirty());
        QStringList before;
        for (const auto& e : session.store()->entries())
            before << e.summary.name;
        const QStringList dirsBefore = session.workspace()->data().adapterDirs;

        QTableView* table = w.fleetView()->table();
        table->selectionModel()->clearSelection();
        for (int r : {1, 2, 3, 7})
            table->selectionModel()->select(table->model()->index(r, 0),
                                            QItemSelectionModel::Select | QItemSelectionModel::Rows);
        QStringList removed;
        for (int row : w.fleetView()->selectedStoreRows())
            removed << session.store()->entry(row).summary.name;
        QCOMPARE(removed.size(), 4);
        int asked = -1;
        bool answer = false;
        w.fleetView()->setConfirmRemoval([&](int count, const QStringList&) {
            asked = count;
            return answer;
        });
        QVERIFY(!w.fleetView()->removeSelected()); // declined: nothing happens
        QCOMPARE(asked, 4);
        QCOMPARE(session.store()->size(), kAdapters);
        QVERIFY(!w.undoAction()->isEnabled());
        answer = true;
        QVERIFY(w.fleetView()->removeSelected());
        QCOMPARE(session.store()->size(), kAdapters - 4);
        QVERIFY(session.workspace()->isDirty());
        QCOMPARE(session.bankStaleness().removed, 4);

        // Edit > Undo (Ctrl+Z) puts exactly them back, in their places, with their bank results.
        const auto undoKeys = QKeySequence::keyBindings(QKeySequence::Undo);
        QVERIFY(w.undoAction()->shortcuts().contains(undoKeys.isEmpty() ? QKeySequence(Qt::CTRL | Qt::Key_Z)
                                                                        : undoKeys.front()));
        QVERIFY(w.undoAction()->isEnabled());
        w.undoAction()->trigger();
        QStringList after;
        for (const auto& e : session.store()->entries())
            after << e.summary.name;
        QCOMPARE(after, before);
        QCOMPARE(session.workspace()->data().adapterDirs, dirsBefore);
        QVERIFY(!session.workspace()->isDirty());
        QVERIFY(!session.bankStaleness().isStale());
        for (const auto& e : session.store()->entries())
            QVERIFY(e.hasCluster() && e.hasError());
        // Redo removes them again.
        QVERIFY(w.redoAction()->isEnabled());
        w.redoAction()->trigger();
        QCOMPARE(session.store()->size(), kAdapters - 4);
        for (const QString& name : before)
            QCOMPARE(rowOfName(*session.store(), name) >= 0, !removed.contains(name));
    }

    // Undo never makes two adapters share a name: one imported meanwhile under a removed name stays.
    void undoKeepsNamesUnique() {
        QTemporaryDir other;
        copyAs(fleetDir(), other.filePath("again"), {"adapter-0000"}, {"adapter-0002"});
        ui::Session session;
        QVERIFY(importAll(session, {fleetDir()}));
        QSignalSpy lines(&session, &ui::Session::operationFinished);
        session.removeRows(
            {rowOfName(*session.store(), "adapter-0001"), rowOfName(*session.store(), "adapter-0002")});
        QCOMPARE(session.store()->size(), kAdapters - 2);
        QVERIFY(importAll(session, {other.filePath("again")}));
        session.undoStack()->undo();
        QCOMPARE(session.store()->size(), kAdapters);
        QSet<QString> names;
        for (const auto& e : session.store()->entries())
            names.insert(e.summary.name);
        QCOMPARE(names.size(), kAdapters);
        const int row = rowOfName(*session.store(), "adapter-0002");
        QCOMPARE(session.store()->entry(row).summary.dir,
                 QDir::cleanPath(other.filePath("again/adapter-0002")));
        QVERIFY(rowOfName(*session.store(), "adapter-0001") >= 0);
        QVERIFY2(lines.last().at(0).toString().contains("not restored") &&
                     lines.last().at(0).toString().contains("adapter-0002"),
                 qPrintable(lines.last().at(0).toString()));
    }

    // Probe 2: the saved demo pointed into the temporary folder; now its adapters live beside it.
    void savedDemoOutlivesItsTemporaryFolder() {
        QTemporaryDir out;
        const QString ws = out.filePath("demo.lorafleet");
        QString error;
        std::size_t bankAdapters = 0;
        {
            ui::Session session;
            auto demo = std::make_unique<ui::DemoWorkspace>(&session);
            QSignalSpy done(demo.get(), &ui::DemoWorkspace::finished);
            demo->start();
            QVERIFY(done.wait(300000));
            QVERIFY2(done.at(0).at(0).toBool(), qPrintable(done.at(0).at(1).toString()));
            QCOMPARE(session.store()->size(), ui::DemoWorkspace::kAdapters);
            const QString temp = demo->folder();
            QVERIFY(QFileInfo(temp).isDir());
            QVERIFY2(session.saveWorkspace(ws, &error), qPrintable(error));
            QVERIFY(!session.workspace()->isDirty());
            bankAdapters = session.bank()->adapters.size();
            // Every adapter of the saved workspace is in demo.adapters/, none in the temporary folder.
            const auto saved = ui::Workspace::read(ws, &error);
            QVERIFY2(saved, qPrintable(error));
            QCOMPARE(saved->adapterDirs.size(), ui::DemoWorkspace::kAdapters);
            for (const QString& d : saved->adapterDirs)
                QVERIFY2(d.startsWith(out.filePath("demo.adapters/")), qPrintable(d));
            demo.reset(); // removes the temporary folder
            QVERIFY(!QFileInfo::exists(temp));
        }
        QCOMPARE(bankAdapters, std::size_t(ui::DemoWorkspace::kAdapters));
        ui::Session reopened;
        QVERIFY2(reopened.openWorkspace(ws, &error), qPrintable(error));
        QVERIFY(test::waitForImport(reopened));
        QTRY_VERIFY_WITH_TIMEOUT(!reopened.isBusy(), 60000);
        QCOMPARE(reopened.store()->size(), ui::DemoWorkspace::kAdapters);
        QVERIFY(reopened.store()->problems().isEmpty());
        QVERIFY(reopened.bank());
        QCOMPARE(reopened.bank()->adapters.size(), std::size_t(ui::DemoWorkspace::kAdapters));
        QVERIFY(!reopened.bankStaleness().isStale());
        for (const auto& e : reopened.store()->entries())
            QVERIFY(e.hasCluster() && e.hasError());
        QVERIFY(!reopened.workspace()->isDirty());
    }
};

QTEST_MAIN(TestNoLoss)
#include "test_no_loss.moc"
