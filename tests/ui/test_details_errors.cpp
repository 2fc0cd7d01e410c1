// The Fleet tab's details pane after compression: in the main window (so through its bankChanged
// connection), with a tiny synthetic PEFT fleet imported and one adapter selected, the per-module table's
// Error column is blank before any bank, then equals, cell by cell, the squared relative error the bank
// holds for that adapter and module (looked up here by linear search over the bank's adapter names and
// module paths, independently of the model's own matching); the header shows the adapter's cluster and
// mean error; a newly selected adapter gets its own errors; a module the bank lacks stays blank, an
// adapter the bank does not hold is blank everywhere, and clearing the bank blanks it all again.
// Set LORAFLEET_SCREENSHOT_DIR to keep PNGs of the window and the pane showing the errors.
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/compressed_bank.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/adapter_details_pane.hpp"
#include "ui/fleet/fleet_proxy_model.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/fleet_view.hpp"
#include "ui/fleet/module_table_model.hpp"
#include "ui/main/main_window.hpp"
#include "ui/workspace/workspace.hpp"

#include <QLocale>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

using namespace lorafleet;

namespace {

constexpr int kAdapters = 6;
const QString kDash = QStringLiteral("\u2014");

// The bank's error of adapter `name` on module `path`, by plain search; NaN when either is absent.
double bankError(const bank::compressed_bank& b, const std::string& name, const std::string& path) {
    const auto a = std::find_if(b.adapters.begin(), b.adapters.end(),
                                [&](const bank::bank_adapter& x) { return x.name == name; });
    const auto m = std::find_if(b.modules.begin(), b.modules.end(),
                                [&](const bank::bank_module& x) { return x.path == path; });
    if (a == b.adapters.end() || m == b.modules.end()) return std::nan("");
    return a->errors[std::size_t(m - b.modules.begin())];
}

const bank::bank_adapter& bankAdapter(const bank::compressed_bank& b, const std::string& name) {
    for (const auto& a : b.adapters)
        if (a.name == name) return a;
    throw std::runtime_error("adapter not in bank: " + name);
}

// Set LORAFLEET_SCREENSHOT_DIR to keep the rendering of the pane with errors.
void keep(const QImage& img, const QString& name) {
    const QString dir = qEnvironmentVariable("LORAFLEET_SCREENSHOT_DIR");
    if (!dir.isEmpty()) QVERIFY(img.save(QDir(dir).filePath(name)));
}

// The one error format of the console (ui/common/text_format.hpp).
QString shown(double v) {
    return lorafleet::ui::formatError(v);
}

} // namespace

class TestDetailsErrors : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_dir;

    ui::ModuleTableModel* modules(ui::MainWindow& w) { return w.fleetView()->details()->moduleModel(); }

    // Selects the table row of adapter `name`; true when the details pane then shows it.
    bool select(ui::MainWindow& w, const QString& name) {
        const auto* store = w.session()->store();
        for (int r = 0; r < store->size(); ++r) {
            if (QString::fromStdString(store->entry(r).adapter->name) != name) continue;
            const QModelIndex src = w.fleetView()->proxy()->sourceModel()->index(r, 0);
            w.fleetView()->table()->selectRow(w.fleetView()->proxy()->mapFromSource(src).row());
            return modules(w)->adapter() && modules(w)->adapter()->name == name.toStdString();
        }
        return false;
    }

    // Every Error cell and the header are blank.
    void verifyBlank(ui::MainWindow& w) {
        ui::ModuleTableModel* m = modules(w);
        QVERIFY(m->rowCount() > 0);
        for (int r = 0; r < m->rowCount(); ++r) {
            const QModelIndex cell = m->index(r, ui::ModuleTableModel::Error);
            QVERIFY2(m->data(cell).toString().isEmpty(), qPrintable(m->data(cell).toString()));
            QCOMPARE(m->data(cell, ui::ModuleTableModel::SortRole).toDouble(), -1.0);
            QVERIFY(std::isnan(m->error(r)));
        }
        QCOMPARE(w.fleetView()->details()->clusterText(), kDash);
        QCOMPARE(w.fleetView()->details()->meanErrorText(), kDash);
    }

    // Every Error cell equals the bank's error for the shown adapter and the row's module; returns the
    // number of rows checked whose error is a number.
    int verifyMatches(ui::MainWindow& w, const bank::compressed_bank& b) {
        ui::ModuleTableModel* m = modules(w);
        const std::string name = m->adapter()->name;
        int numbers = 0;
        for (int r = 0; r < m->rowCount(); ++r) {
            const std::string path =
                m->data(m->index(r, ui::ModuleTableModel::Path)).toString().toStdString();
            const double expected = bankError(b, name, path);
            const QModelIndex cell = m->index(r, ui::ModuleTableModel::Error);
            if (std::isnan(expected)) {
                if (!m->data(cell).toString().isEmpty()) return -1;
                continue;
            }
            if (m->data(cell, ui::ModuleTableModel::SortRole).toDouble() != expected) return -1;
            if (m->error(r) != expected) return -1;
            if (m->data(cell).toString() != shown(expected)) return -1;
            ++numbers;
        }
        return numbers;
    }

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_dir.isValid());
        test::writeTinyFleet(m_dir.filePath("fleet"), kAdapters, 5);
    }

    void errorColumnFollowsTheBank() {
        ui::MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        ui::Session* session = w.session();
        session->importPaths({m_dir.filePath("fleet")});
        QVERIFY(test::waitForImport(*session));
        QCOMPARE(session->store()->size(), kAdapters);
        QCOMPARE(modules(w)->headerData(ui::ModuleTableModel::Error, Qt::Horizontal).toString(),
                 QStringLiteral("Error"));

        // Before compression: blank.
        QVERIFY(select(w, "adapter-0002"));
        verifyBlank(w);

        // Rank 2 of rank-4 adapters: every module keeps a real, adapter-specific error.
        compress::compress_options options;
        options.jd.rank = 2;
        options.clusters = 2;
        options.jd.seed = 9;
        auto backend = lorafleet::backend::make_compress_backend("cpu");
        auto built =
            bank::compress_adapters_to_bank(session->store()->adapters(), *backend, options, std::nullopt, 1);
        const auto b = std::make_shared<const bank::compressed_bank>(std::move(built.bank));
        session->setBank(b);
        QCOMPARE(modules(w)->bank().get(), b.get()); // through the main window's connection

        const int rows = modules(w)->rowCount();
        QCOMPARE(verifyMatches(w, *b), rows); // every module of the adapter is in the bank
        std::set<double> distinct;
        for (int r = 0; r < rows; ++r) {
            QVERIFY(modules(w)->error(r) > 0.0 && modules(w)->error(r) < 1.0);
            distinct.insert(modules(w)->error(r));
        }
        QVERIFY(distinct.size() > 1); // per module, not one number repeated
        const auto& entry = bankAdapter(*b, "adapter-0002");
        QCOMPARE(w.fleetView()->details()->clusterText(), QString::number(entry.cluster));
        QCOMPARE(w.fleetView()->details()->meanErrorText(), shown(entry.mean_error()));

        QApplication::processEvents();
        keep(w.grab().toImage(), "details_errors_window.png");
        keep(w.fleetView()->details()->grab().toImage(), "details_errors.png");

        // Another adapter selected: its own errors (the pane kept the bank).
        QVERIFY(select(w, "adapter-0004"));
        QCOMPARE(verifyMatches(w, *b), modules(w)->rowCount());
        QCOMPARE(w.fleetView()->details()->clusterText(),
                 QString::number(bankAdapter(*b, "adapter-0004").cluster));

        // A bank without module 0 of adapter-0004 (zero core, NaN error, as the bank's invariant wants):
        // that row is blank, the others still match.
        auto lacking = std::make_shared<bank::compressed_bank>(*b);
        const std::string firstPath = modules(w)->adapter()->modules.front().path;
        std::size_t mIndex = 0;
        while (lacking->modules[mIndex].path != firstPath)
            ++mIndex;
        const std::size_t aIndex = *lacking->find_adapter("adapter-0004");
        lacking->adapters[aIndex].errors[mIndex] = std::nan("");
        std::fill_n(lacking->core(mIndex, aIndex), lacking->core_size(), 0.0f);
        session->setBank(lacking);
        QVERIFY(modules(w)->data(modules(w)->index(0, ui::ModuleTableModel::Error)).toString().isEmpty());
        QCOMPARE(verifyMatches(w, *lacking), modules(w)->rowCount() - 1);

        // A bank that does not hold the shown adapter (renamed): blank everywhere.
        auto other = std::make_shared<bank::compressed_bank>(*b);
        other->adapters[aIndex].name = "somebody-else";
        session->setBank(other);
        verifyBlank(w);

        // Back to the real bank, then cleared: blank again.
        session->setBank(b);
        QCOMPARE(verifyMatches(w, *b), modules(w)->rowCount());
        session->setBank(nullptr);
        verifyBlank(w);
        QVERIFY(!modules(w)->bank());

        session->workspace()->markClean(); // the window is closed without asking
    }
};

QTEST_MAIN(TestDetailsErrors)
#include "test_details_errors.moc"
