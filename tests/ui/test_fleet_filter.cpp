// The Fleet tab after a compression: the filter matches the cluster (cluster=N) and the error
// (error>X, error<X, or the error as shown), and keeps the operator's selection across filter edits
// (rows hidden by a filter come back selected); the Modules column is wide enough for its labels; the
// fleet's LoRA-weights size is the same text as the Compress tab's "Original" row, and both use the one
// error format.
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/text_format.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/compress/compress_panel.hpp"
#include "ui/fleet/fleet_model.hpp"
#include "ui/fleet/fleet_proxy_model.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/fleet_view.hpp"

#include <QHeaderView>
#include <QItemSelectionModel>
#include <QLineEdit>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>

using namespace lorafleet;

namespace {

QStringList shownNames(const ui::FleetView& view) {
    QStringList names;
    for (int r = 0; r < view.proxy()->rowCount(); ++r)
        names << view.proxy()->index(r, ui::FleetModel::Name).data().toString();
    names.sort();
    return names;
}

QStringList selectedNames(const ui::FleetView& view) {
    QStringList names;
    for (const QModelIndex& i : view.table()->selectionModel()->selectedRows())
        names << i.siblingAtColumn(ui::FleetModel::Name).data().toString();
    names.sort();
    return names;
}

} // namespace

class TestFleetFilter : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_root;

private slots:
    void initTestCase() {
        test::isolateSettings();
        QLocale::setDefault(QLocale::c());
        QVERIFY(m_root.isValid());
        test::writeTinyFleet(m_root.filePath("fleet"), 12);
    }

    void filterMatchesClusterAndErrorAndKeepsSelection() {
        ui::Session session;
        session.importPaths({m_root.filePath("fleet")});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 12);
        ui::CompressSettings settings;
        settings.rank = 2;
        settings.clusters = 2;
        settings.device = "cpu";
        QSignalSpy finished(session.compressor(), &ui::CompressController::finished);
        QVERIFY(session.compressor()->start(settings));
        QVERIFY(finished.wait(240'000));
        QVERIFY(session.bank());

        ui::FleetView view(&session);
        view.resize(1400, 700);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));

        // The independent expectation: names by cluster and by error, from the store's entries.
        QStringList inCluster1, above;
        std::vector<double> errors;
        for (const auto& e : session.store()->entries())
            errors.push_back(e.error);
        std::sort(errors.begin(), errors.end());
        const double median = errors[errors.size() / 2];
        for (const auto& e : session.store()->entries()) {
            if (e.cluster == 1) inCluster1 << e.summary.name;
            if (e.error > median) above << e.summary.name;
        }
        inCluster1.sort();
        above.sort();
        QVERIFY(!inCluster1.isEmpty() && inCluster1.size() < 12);

        view.filterEdit()->setText("cluster=1");
        QCOMPARE(shownNames(view), inCluster1);
        view.filterEdit()->setText(QString("error>%1").arg(median, 0, 'g', 17));
        QCOMPARE(shownNames(view), above);
        // The error as the table shows it is a filter word too.
        const auto& first = session.store()->entry(0);
        view.filterEdit()->setText(ui::formatError(first.error));
        QVERIFY(shownNames(view).contains(first.summary.name));
        QCOMPARE(view.proxy()->index(0, ui::FleetModel::Error).data().toString().size() > 0, true);

        // Selection: three rows, a filter that hides two of them, then no filter: all three again.
        view.filterEdit()->clear();
        QStringList chosen;
        for (int r : {0, 3, 7}) {
            const QModelIndex i = view.proxy()->index(r, 0);
            view.table()->selectionModel()->select(i,
                                                   QItemSelectionModel::Select | QItemSelectionModel::Rows);
            chosen << i.data().toString();
        }
        chosen.sort();
        QCOMPARE(selectedNames(view), chosen);
        view.filterEdit()->setText(chosen.front());
        QCOMPARE(selectedNames(view), QStringList{chosen.front()});
        view.filterEdit()->clear();
        QCOMPARE(selectedNames(view), chosen);

        // Modules column: wide enough for every label it shows.
        const QFontMetrics fm = view.table()->fontMetrics();
        for (const auto& e : session.store()->entries())
            QVERIFY2(view.table()->horizontalHeader()->sectionSize(ui::FleetModel::Modules) >
                         fm.horizontalAdvance(e.summary.modulesLabel),
                     qPrintable(e.summary.modulesLabel));

        // Sizes: the fleet line's LoRA weights and the Compress tab's original are the same text.
        ui::CompressPanel panel(&session);
        const QString weights = ui::formatBytes(session.store()->totalWeightBytes());
        QVERIFY2(view.countsText().contains(weights + " of LoRA weights"), qPrintable(view.countsText()));
        QVERIFY2(panel.resultText().contains("Original\t" + weights), qPrintable(panel.resultText()));
        QVERIFY2(panel.resultText().contains(ui::formatError(session.bank()->mean_error())),
                 qPrintable(panel.resultText()));
        const QImage shot = view.grab().toImage();
        const QString dir = qEnvironmentVariable("LORAFLEET_TEST_SHOTS");
        if (!dir.isEmpty()) QVERIFY(shot.save(dir + "/fleet_filter.png"));
    }
};

QTEST_MAIN(TestFleetFilter)
#include "test_fleet_filter.moc"
