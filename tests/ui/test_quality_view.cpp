// The Quality tab (issue 18) over a saved workspace: a synthetic tinystories fleet of strong adapters
// compressed lossily (rank 2 < the adapters' rank 4, two clusters) and saved with its bank. Evaluate runs
// the engine's bank evaluation on the bundled demo model and stores it; then the scatter has one point per
// adapter at (mean error, token agreement / exact match) equal to the values read back from the bank folder
// (read_bank, independent of the view); the worst table is ascending by agreement (checked against a sort
// of the stored values); a reopened workspace shows the stored results without evaluating again. In the
// main window, clicking a dot selects that adapter's Fleet row and selecting Fleet rows highlights their
// dots; "Try in Playground" switches to the Playground with the adapter chosen. Ticking "Serve raw"
// rewrites the bank folder with the adapter in raw_adapters (read back with read_bank), the session's
// bank too, and survives reopening; clearing it empties the list again.
// LORAFLEET_QUALITY_SCREENSHOT=PNG (default /tmp/lorafleet_quality_view.png) saves the tab.
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/fleet_view.hpp"
#include "ui/main/main_window.hpp"
#include "ui/playground/playground_view.hpp"
#include "ui/quality/quality_view.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QItemSelectionModel>
#include <QPushButton>
#include <QSignalSpy>
#include <QTabWidget>
#include <QTableView>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <qcustomplot.h>

#include <algorithm>
#include <map>

using namespace lorafleet;

namespace {

QString demoModel() {
    return QString::fromStdString(test::demo_model_dir().string());
}

bool waitForBank(ui::Session& session, int timeoutMs = 60'000) {
    QElapsedTimer t;
    t.start();
    while ((session.isLoadingBank() || !session.bank()) && t.elapsed() < timeoutMs)
        QTest::qWait(20);
    return session.bank() != nullptr;
}

} // namespace

class TestQualityView : public QObject {
    Q_OBJECT

    QTemporaryDir m_dir;
    QString m_workspace; // the saved workspace (fleet + bank)
    QString m_bankDir;

    // Opens the saved workspace in `session` and waits for its fleet and bank.
    bool open(ui::Session& session) {
        QString error;
        if (!session.openWorkspace(m_workspace, &error)) return false;
        return test::waitForImport(session) && waitForBank(session);
    }

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_dir.isValid());
        synth::synth_options options;
        options.out_dir = m_dir.filePath(QStringLiteral("fleet")).toStdString();
        options.adapters = 6;
        options.geometry = *io::geometry_preset("tinystories-656k");
        options.modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
        options.rank = 4;
        options.alpha = 512.0;
        options.clusters = 2;
        options.noise = 0.5;
        options.seed = 5;
        options.threads = 1;
        synth::write_synthetic_fleet(options);

        ui::Session session;
        QVERIFY(session.importPaths({m_dir.filePath(QStringLiteral("fleet"))}));
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 6);
        compress::compress_options copts;
        copts.jd.rank = 2; // below the adapters' rank 4: lossy, so compressed departs from raw
        copts.clusters = 2;
        auto backend = backend::make_compress_backend("cpu", 1);
        auto fb =
            bank::compress_adapters_to_bank(session.store()->adapters(), *backend, copts, std::nullopt, 1);
        session.setBank(std::make_shared<const bank::compressed_bank>(std::move(fb.bank)), true);
        m_workspace = m_dir.filePath(QStringLiteral("ws.lorafleet"));
        QString error;
        QVERIFY2(session.saveWorkspace(m_workspace, &error), qPrintable(error));
        m_bankDir = session.workspace()->data().bankPath;
        QVERIFY(!m_bankDir.isEmpty());
        QVERIFY(!bank::read_bank(m_bankDir.toStdString()).quality.has_value());
    }

    // An unsaved bank cannot be evaluated (its results have nowhere to go): the view says so.
    void unsavedBankIsRefused() {
        ui::Session session;
        QVERIFY(open(session));
        session.setBank(std::make_shared<const bank::compressed_bank>(*session.bank()), true);
        ui::QualityView view(&session);
        QVERIFY(!view.evaluateButton()->isEnabled());
        QVERIFY(!view.evaluate());
        QVERIFY2(view.statusText().contains("Save the workspace"), qPrintable(view.statusText()));
        QVERIFY(!view.setServeRaw(QStringLiteral("adapter-0000"), true));
    }

    // Cancel right after Evaluate: the job ends cancelled and the bank folder is unchanged.
    void cancelLeavesTheBankUnchanged() {
        ui::Session session;
        QVERIFY(open(session));
        ui::QualityView view(&session);
        view.setModelDirProvider([] { return demoModel(); });
        QSignalSpy done(&view, &ui::QualityView::evaluationFinished);
        QVERIFY(view.evaluate());
        QVERIFY(view.cancelButton()->isVisibleTo(&view));
        view.cancel();
        QVERIFY(done.wait(120'000));
        QVERIFY(!done.first().at(0).toBool());
        QVERIFY2(done.first().at(1).toString().contains("cancelled"),
                 qPrintable(done.first().at(1).toString()));
        QVERIFY(!bank::read_bank(m_bankDir.toStdString()).quality.has_value());
        QVERIFY(!view.hasEvaluation());
        QVERIFY(view.evaluateButton()->isEnabled());
    }

    // A model folder that does not exist: the evaluation fails with a one-line reason, nothing stored.
    void badModelFolderFails() {
        ui::Session session;
        QVERIFY(open(session));
        ui::QualityView view(&session);
        view.setModelDirProvider([this] { return m_dir.filePath(QStringLiteral("no-model")); });
        QSignalSpy done(&view, &ui::QualityView::evaluationFinished);
        QVERIFY(view.evaluate());
        QVERIFY(done.wait(60'000));
        QVERIFY(!done.first().at(0).toBool());
        const QString text = done.first().at(1).toString();
        QVERIFY2(text.startsWith("Evaluation failed: ") && !text.contains('\n'), qPrintable(text));
        QVERIFY(!bank::read_bank(m_bankDir.toStdString()).quality.has_value());
    }

    // Evaluate stores the results in the bank; the scatter and the table show exactly the stored values.
    void evaluateStoresAndPlots() {
        ui::Session session;
        QVERIFY(open(session));
        ui::QualityView view(&session);
        view.setModelDirProvider([] { return demoModel(); });
        QVERIFY(!view.hasEvaluation());
        QVERIFY(view.plottedPoints().isEmpty());
        QVERIFY(view.evaluateButton()->isEnabled());
        QSignalSpy done(&view, &ui::QualityView::evaluationFinished);
        QElapsedTimer clock;
        clock.start();
        QVERIFY(view.evaluate()); // the default 8 prompts x 16 tokens
        QVERIFY(view.isBusy());
        QVERIFY(done.wait(300'000));
        qInfo("evaluated 6 adapters x 8 prompts x 16 tokens in %lld ms", clock.elapsed());
        QVERIFY2(done.first().at(0).toBool(), qPrintable(done.first().at(1).toString()));
        QVERIFY(view.hasEvaluation());

        const auto stored = bank::read_bank(m_bankDir.toStdString());
        QVERIFY(stored.quality.has_value());
        QCOMPARE(int(stored.quality->adapters.size()), 6);
        QCOMPARE(stored.quality->prompts, 8);
        QCOMPARE(stored.quality->max_tokens, 16);
        QVERIFY(session.bank()->quality.has_value()); // the session holds the stored results too

        for (auto metric : {ui::QualityView::Metric::TokenAgreement, ui::QualityView::Metric::ExactMatch}) {
            view.setMetric(metric);
            const auto points = view.plottedPoints();
            QCOMPARE(points.size(), 6);
            QSet<QString> seen;
            for (const auto& p : points) {
                const auto i = stored.find_adapter(p.name.toStdString());
                QVERIFY2(i.has_value(), qPrintable(p.name));
                const auto& a = stored.adapters[*i];
                const auto& q = stored.quality->adapters.at(a.name);
                QCOMPARE(p.cluster, a.cluster);
                QCOMPARE(p.error, a.mean_error());
                QCOMPARE(p.agreement, metric == ui::QualityView::Metric::ExactMatch ? q.exact_match()
                                                                                    : q.token_agreement());
                seen.insert(p.name);
            }
            QCOMPARE(seen.size(), 6);
        }

        // The worst table: ascending token agreement (ties: larger KL first, then name).
        view.setMetric(ui::QualityView::Metric::TokenAgreement);
        std::vector<std::pair<std::string, bank::adapter_quality>> expected(stored.quality->adapters.begin(),
                                                                            stored.quality->adapters.end());
        std::sort(expected.begin(), expected.end(), [](const auto& a, const auto& b) {
            if (a.second.token_agreement() != b.second.token_agreement())
                return a.second.token_agreement() < b.second.token_agreement();
            if (a.second.mean_kl != b.second.mean_kl) return a.second.mean_kl > b.second.mean_kl;
            return a.first < b.first;
        });
        QStringList expectedOrder;
        for (const auto& [name, q] : expected)
            expectedOrder << QString::fromStdString(name);
        QCOMPARE(view.worstOrder(), expectedOrder);
        // The lossy bank departs from raw somewhere, so the order is not vacuous.
        QVERIFY(expected.front().second.token_agreement() < expected.back().second.token_agreement() ||
                expected.front().second.token_agreement() < 1.0);
        qInfo("token agreement: worst %s %.4f, best %s %.4f", expected.front().first.c_str(),
              expected.front().second.token_agreement(), expected.back().first.c_str(),
              expected.back().second.token_agreement());

        // Screenshot of the tab with a selected point.
        view.resize(1200, 700);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        view.selectAdapters({expectedOrder.front()});
        const QString png = qEnvironmentVariableIsSet("LORAFLEET_QUALITY_SCREENSHOT")
                                ? qEnvironmentVariable("LORAFLEET_QUALITY_SCREENSHOT")
                                : QStringLiteral("/tmp/lorafleet_quality_view.png");
        QVERIFY(view.grab().save(png));
        QVERIFY(test::distinctColours(view.grab().toImage()) > 20);
    }

    // A stored evaluation is shown at once, without running anything.
    void storedEvaluationIsShownWithoutRecomputing() {
        ui::Session session;
        QVERIFY(open(session));
        ui::QualityView view(&session);
        QVERIFY(view.hasEvaluation());
        QCOMPARE(view.plottedPoints().size(), 6);
        QVERIFY(session.host()->runningJobs().isEmpty());
        QCOMPARE(view.evaluateButton()->text(), QStringLiteral("Re-evaluate"));
    }

    // In the main window: dots <-> Fleet rows, and Try in Playground.
    void linkedSelectionAndPlayground() {
        ui::MainWindow w;
        QVERIFY(open(*w.session()));
        auto* quality = w.findChild<ui::QualityView*>();
        QVERIFY(quality);
        QVERIFY(w.showTab(QStringLiteral("quality")));
        w.resize(1280, 800);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QCOMPARE(quality->plottedPoints().size(), 6);

        // Click one dot (at its pixel): exactly its Fleet row is selected.
        const auto target = quality->plottedPoints().at(2);
        QCustomPlot* plot = quality->plot();
        plot->replot();
        const QPoint pixel(int(plot->xAxis->coordToPixel(target.error)),
                           int(plot->yAxis->coordToPixel(target.agreement)));
        const QString under = quality->adapterAt(pixel); // the target, or a point at the same place
        QVERIFY(!under.isEmpty());
        QVERIFY(quality->toolTipFor(under).startsWith(under + " (cluster "));
        QVERIFY(quality->adapterAt(QPoint(1, 1)).isEmpty()); // the corner, outside the axes
        QSignalSpy picked(quality, &ui::QualityView::adaptersSelected);
        QTest::mouseClick(plot, Qt::LeftButton, {}, pixel);
        QTRY_VERIFY(picked.count() >= 1);
        const QStringList clicked = quality->selectedAdapters();
        QCOMPARE(clicked.size(), 1);
        // Points can coincide: the clicked one must be at the same place as the target.
        const auto clickedPoint =
            std::find_if(quality->plottedPoints().begin(), quality->plottedPoints().end(),
                         [&](const auto& p) { return p.name == clicked.front(); });
        QCOMPARE(clickedPoint->error, target.error);
        QStringList tableNames;
        for (int row : w.fleetView()->selectedStoreRows())
            tableNames << QString::fromStdString(w.session()->store()->entry(row).adapter->name);
        QCOMPARE(tableNames, clicked);

        // Select two Fleet rows: their dots are highlighted, and the worst table's rows too.
        QTableView* table = w.fleetView()->table();
        table->clearSelection();
        QItemSelection rows;
        rows.select(table->model()->index(0, 0), table->model()->index(0, 0));
        rows.select(table->model()->index(3, 0), table->model()->index(3, 0));
        table->selectionModel()->select(rows,
                                        QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
        QStringList fleetNames;
        for (int row : w.fleetView()->selectedStoreRows())
            fleetNames << QString::fromStdString(w.session()->store()->entry(row).adapter->name);
        fleetNames.sort();
        QCOMPARE(fleetNames.size(), 2);
        QTRY_COMPARE(quality->selectedAdapters(), fleetNames);
        QStringList tableSelected;
        for (const QModelIndex& i : quality->worstTable()->selectionModel()->selectedRows())
            tableSelected << quality->worstTable()->item(i.row(), ui::QualityView::NameColumn)->text();
        tableSelected.sort();
        QCOMPARE(tableSelected, fleetNames);

        // Try in Playground: the Playground tab, with the current row's adapter chosen.
        auto* tabs = w.findChild<QTabWidget*>();
        QVERIFY(w.showTab(QStringLiteral("quality")));
        const QString worst = quality->worstOrder().at(1);
        quality->worstTable()->setCurrentCell(1, ui::QualityView::NameColumn);
        QTest::mouseClick(quality->tryButton(), Qt::LeftButton);
        auto* playground = qobject_cast<ui::PlaygroundView*>(tabs->currentWidget());
        QVERIFY(playground);
        QCOMPARE(playground->currentAdapter(), worst);
    }

    // Serve raw: the bank folder's raw list is rewritten (and survives reopening); clearing it empties it.
    void serveRawRewritesTheBank() {
        const QString name = [&] {
            ui::Session session;
            if (!open(session)) return QString();
            ui::QualityView view(&session);
            return view.worstOrder().value(0);
        }();
        QVERIFY(!name.isEmpty());
        {
            ui::Session session;
            QVERIFY(open(session));
            ui::QualityView view(&session);
            QTableWidget* table = view.worstTable();
            QCOMPARE(table->item(0, ui::QualityView::NameColumn)->text(), name);
            QCOMPARE(table->item(0, ui::QualityView::ServeRawColumn)->checkState(), Qt::Unchecked);
            QSignalSpy stored(&view, &ui::QualityView::rawListStored);
            table->item(0, ui::QualityView::ServeRawColumn)->setCheckState(Qt::Checked); // as a click does
            QVERIFY(stored.wait(60'000));
            QVERIFY2(stored.first().at(0).toBool(), qPrintable(stored.first().at(1).toString()));
            const auto back = bank::read_bank(m_bankDir.toStdString());
            QCOMPARE(back.raw_adapters, std::vector<std::string>{name.toStdString()});
            QVERIFY(back.quality.has_value()); // the evaluation is kept
            QCOMPARE(session.bank()->raw_adapters, std::vector<std::string>{name.toStdString()});
            QCOMPARE(view.rawAdapters(), QStringList{name});
            // What the Serve tab opens for this bank (open_bank_provider on the in-memory bank): hybrid,
            // with exactly that adapter served raw.
            const auto weights = serve::model_weights::load(test::demo_model_dir());
            const auto provider = serve::open_bank_provider(*session.bank(), weights->geometry(), "the bank");
            QCOMPARE(provider->mode(), std::string_view("hybrid"));
            for (const auto& info : provider->list())
                QCOMPARE(info.serving, std::string(info.name == name.toStdString() ? "raw" : "compressed"));
        }
        {
            // Reopened: the switch shows the stored list; clearing it writes an empty list (format 1).
            ui::Session session;
            QVERIFY(open(session));
            QCOMPARE(session.bank()->raw_adapters, std::vector<std::string>{name.toStdString()});
            ui::QualityView view(&session);
            const int row = int(view.worstOrder().indexOf(name));
            QVERIFY(row >= 0);
            QTableWidget* table = view.worstTable();
            QCOMPARE(table->item(row, ui::QualityView::ServeRawColumn)->checkState(), Qt::Checked);
            QSignalSpy stored(&view, &ui::QualityView::rawListStored);
            table->item(row, ui::QualityView::ServeRawColumn)->setCheckState(Qt::Unchecked);
            QVERIFY(stored.wait(60'000));
            QVERIFY(stored.first().at(0).toBool());
            QVERIFY(bank::read_bank(m_bankDir.toStdString()).raw_adapters.empty());
        }
        // A name the bank lacks is refused without a job.
        ui::Session session;
        QVERIFY(open(session));
        ui::QualityView view(&session);
        QVERIFY(!view.setServeRaw(QStringLiteral("no-such-adapter"), true));
        QVERIFY(!view.isBusy());
    }
};

QTEST_MAIN(TestQualityView)
#include "test_quality_view.moc"
