// The Errors tab: error_stats against hand-computed histograms and an independent per-cell mean of the
// bank's errors (NaN cells where a layer lacks a module), the module display order, and the ErrorView fed
// banks: histogram bars that count every adapter over an x-axis taken from the data (not stretched to a
// far target; no target line for a fixed cluster count, the bank's own target for an automatic one), the
// heat map's cells, distinct cell labels in the one error format, module tick labels, and the
// error-vs-rank sweep run in the background on a synthetic fleet with planted rank-4 structure (error ~ 0
// at rank 4, > 0 below; the point at the bank's rank equals the bank's own error on the sampled modules;
// cancel stops it).
// Offscreen renderings are checked not blank and saved to $LORAFLEET_TEST_SHOTS when set.
#include "engine/analysis/error_stats.hpp"
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/text_format.hpp"
#include "ui/errors/error_view.hpp"
#include "ui/fleet/fleet_store.hpp"

#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <qcustomplot.h>

#include <cmath>
#include <map>

using namespace lorafleet;

namespace {

void saveShot(QWidget& w, const QString& name) {
    const QImage image = w.grab().toImage();
    QVERIFY(!image.isNull());
    QVERIFY2(test::distinctColours(image) > 20, "the rendering looks blank");
    const QString dir = qEnvironmentVariable("LORAFLEET_TEST_SHOTS");
    if (!dir.isEmpty()) QVERIFY(image.save(dir + "/" + name));
}

QCPItemStraightLine* verticalLineAt(QCustomPlot* plot, double x) {
    for (int i = 0; i < plot->itemCount(); ++i)
        if (auto* line = qobject_cast<QCPItemStraightLine*>(plot->item(i)))
            if (std::abs(line->point1->coords().x() - x) < 1e-12 &&
                std::abs(line->point2->coords().x() - x) < 1e-12)
                return line;
    return nullptr;
}

bool legendHas(QCustomPlot* plot, const QString& prefix) {
    for (int i = 0; i < plot->legend->itemCount(); ++i)
        if (auto* item = qobject_cast<QCPPlottableLegendItem*>(plot->legend->item(i)))
            if (item->plottable()->name().startsWith(prefix)) return true;
    return false;
}

} // namespace

class TestErrorView : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_root;
    QString fleetDir() const { return m_root.filePath("fleet"); }

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_root.isValid());
        // 8 tinystories-656k adapters in 2 planted groups of exact rank 4 (no noise, float32 weights).
        synth::synth_options options;
        options.out_dir = fleetDir().toStdString();
        options.adapters = 8;
        options.geometry = *io::geometry_preset("tinystories-656k");
        options.modules = {"q_proj", "v_proj"};
        options.rank = 4;
        options.alpha = 8.0;
        options.clusters = 2;
        options.noise = 0.0;
        options.dtype = io::dtype::F32;
        options.seed = 5;
        options.threads = 1;
        synth::write_synthetic_fleet(options);
    }

    void histogramOfAHandCase() {
        const std::vector<double> values = {0.05, 0.15, 0.15, 0.95, 1.0, std::nan(""), -0.1, 0.5};
        const auto h = analysis::error_histogram(values, 4, 0.0, 1.0);
        QCOMPARE(h.counts, (std::vector<int>{3, 0, 1, 2})); // 0.5 opens bin 2; 1.0 closes the last bin
        QCOMPARE(h.outside, 1);
        QCOMPARE(h.width, 0.25);
        QCOMPARE(h.center(0), 0.125);
        QCOMPARE(h.hi(), 1.0);
        QVERIFY_THROWS_EXCEPTION(lorafleet::usage_error, analysis::error_histogram(values, 0, 0, 1));
        QVERIFY_THROWS_EXCEPTION(lorafleet::usage_error, analysis::error_histogram(values, 3, 1, 1));
    }

    void histogramCountsSumToN() {
        random_stream g(9);
        std::vector<double> values(1000);
        double hi = 0;
        for (auto& v : values) {
            v = g.uniform() * 0.7;
            hi = std::max(hi, v);
        }
        const auto h = analysis::error_histogram(values, analysis::default_bin_count(values.size()), 0.0, hi);
        QCOMPARE(int(h.counts.size()), 32); // round(sqrt(1000))
        int sum = 0;
        for (int c : h.counts)
            sum += c;
        QCOMPARE(sum, 1000);
        QCOMPARE(h.outside, 0);
        // Every value lies in the bin that claims it.
        int inFirst = 0;
        for (double v : values)
            inFirst += v < h.lo + h.width;
        QCOMPARE(h.counts[0], inFirst);
    }

    void moduleOrder() {
        const auto names =
            analysis::ordered_module_names({"down_proj", "q_proj", "lm_x", "k_proj", "gate_proj", "v_proj",
                                            "o_proj", "up_proj", "a_extra", "q_proj"});
        QCOMPARE(names, (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                  "up_proj", "down_proj", "a_extra", "lm_x"}));
    }

    // Cell (layer, module) = mean of every adapter's finite error on the bank modules with that layer and
    // short name, computed here from the raw per-adapter errors; NaN where the layer lacks the module.
    void heatMapCellsAreMeansOfTheBanksErrors() {
        const auto bank = test::make_random_bank(compress::jd_method::full, 4);
        const auto stats = analysis::layer_module_errors(bank);
        std::map<std::pair<int, std::string>, std::pair<double, int>> expected;
        for (std::size_t m = 0; m < bank.modules.size(); ++m)
            for (const auto& a : bank.adapters)
                if (std::isfinite(a.errors[m])) {
                    auto& cell = expected[{bank.modules[m].layer, bank.modules[m].short_name}];
                    cell.first += a.errors[m];
                    cell.second += 1;
                }
        QCOMPARE(stats.layers, (std::vector<int>{0, 1}));
        QCOMPARE(stats.modules, (std::vector<std::string>{"q_proj", "k_proj"}));
        int nanCells = 0;
        for (std::size_t r = 0; r < stats.layers.size(); ++r)
            for (std::size_t c = 0; c < stats.modules.size(); ++c) {
                const auto it = expected.find({stats.layers[r], stats.modules[c]});
                if (it == expected.end()) {
                    QVERIFY(std::isnan(stats.at(r, c)));
                    ++nanCells;
                    continue;
                }
                QVERIFY(std::abs(stats.at(r, c) - it->second.first / it->second.second) < 1e-12);
                QCOMPARE(stats.count[r * stats.modules.size() + c], it->second.second);
            }
        QCOMPARE(nanCells, 1); // layer 1 has no k_proj
    }

    void emptyStateAndPlotsOfABank() {
        ui::Session session;
        ui::ErrorView view(&session);
        QVERIFY(view.showsEmptyState());
        auto bank =
            std::make_shared<bank::compressed_bank>(test::make_random_bank(compress::jd_method::full, 4));
        view.setBank(bank);
        QVERIFY(!view.showsEmptyState());

        // Histogram: bar heights sum to the adapters with a finite mean error.
        auto* bars = qobject_cast<QCPBars*>(view.histogramPlot()->plottable(0));
        QVERIFY(bars);
        double total = 0;
        for (auto it = bars->data()->begin(); it != bars->data()->end(); ++it)
            total += it->value;
        int finite = 0;
        for (const auto& a : bank->adapters)
            finite += std::isfinite(a.mean_error());
        QCOMPARE(int(total), finite);
        // A fixed cluster count had no target: no target line, the axis says so.
        QVERIFY(!view.hasTarget());
        QVERIFY(!legendHas(view.histogramPlot(), "Target error"));
        QVERIFY2(view.histogramPlot()->xAxis->label().contains("no target"),
                 qPrintable(view.histogramPlot()->xAxis->label()));
        // The x-axis spans the data (the smallest to the largest mean error, a few % of padding).
        double lo = 1e300, hi = -1;
        for (const auto& a : bank->adapters)
            if (std::isfinite(a.mean_error()))
                lo = std::min(lo, a.mean_error()), hi = std::max(hi, a.mean_error());
        const QCPRange x = view.histogramPlot()->xAxis->range();
        QVERIFY(x.lower <= lo && x.upper >= hi);
        QVERIFY2(x.upper <= hi + 0.1 * (hi - lo) && x.lower >= lo - 0.1 * (hi - lo),
                 qPrintable(QString("axis %1..%2, data %3..%4").arg(x.lower).arg(x.upper).arg(lo).arg(hi)));
        // An automatic count: the bank's own target (from its manifest) is the line.
        bank->parameters = {{"clusters", "auto"}, {"target_error", 0.25}};
        view.setBank(bank);
        QVERIFY(view.hasTarget());
        QCOMPARE(view.targetError(), 0.25);
        QVERIFY(verticalLineAt(view.histogramPlot(), 0.25));
        QVERIFY(legendHas(view.histogramPlot(), "Target error 0.250"));

        // Heat map: the colour map's cells are the statistics, module names on the x axis.
        QCPColorMap* map = nullptr;
        for (int p = 0; p < view.heatMapPlot()->plottableCount(); ++p)
            map = map ? map : qobject_cast<QCPColorMap*>(view.heatMapPlot()->plottable(p));
        QVERIFY(map);
        const auto stats = analysis::layer_module_errors(*bank);
        QCOMPARE(map->data()->keySize(), 2);
        QCOMPARE(map->data()->valueSize(), 2);
        for (int r = 0; r < 2; ++r)
            for (int c = 0; c < 2; ++c) {
                const double want = stats.at(std::size_t(r), std::size_t(c));
                const double got = map->data()->cell(c, r);
                QVERIFY(std::isnan(want) ? std::isnan(got) : std::abs(got - want) < 1e-12);
            }
        auto ticker = view.heatMapPlot()->xAxis->ticker().dynamicCast<QCPAxisTickerText>();
        QVERIFY(ticker);
        QCOMPARE(ticker->ticks().value(0), QString("q"));
        QCOMPARE(ticker->ticks().value(1), QString("k"));
        // Hovering a cell names it and its mean; the absent cell (layer 1, k_proj) says so.
        view.resize(1200, 700);
        view.heatMapPlot()->replot();
        const auto cellPixel = [&](int c, int r) {
            return QPoint(int(view.heatMapPlot()->xAxis->coordToPixel(c)),
                          int(view.heatMapPlot()->yAxis->coordToPixel(r)));
        };
        const QString tip00 = view.heatMapToolTip(cellPixel(0, 0));
        QVERIFY2(tip00.startsWith("layer 0 · q_proj: mean error "), qPrintable(tip00));
        QVERIFY2(tip00.endsWith(QString("over %1 adapters").arg(stats.count[0])), qPrintable(tip00));
        QVERIFY2(view.heatMapToolTip(cellPixel(1, 1)).contains("no adapter"),
                 qPrintable(view.heatMapToolTip(cellPixel(1, 1))));
        view.setBank(nullptr);
        QVERIFY(view.showsEmptyState());
    }

    // The sweep on a fleet with planted exact rank-4 groups, at the bank's k = 2: error vanishes at rank
    // 4 and not below; cancelling a running sweep stops it with no curve.
    void rankSweepFindsThePlantedRank() {
        ui::Session session;
        session.importPaths({fleetDir()});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 8);
        compress::compress_options options;
        options.jd.rank = 4;
        options.clusters = 2;
        auto backend = lorafleet::backend::make_compress_backend("cpu", 1);
        auto fb =
            bank::compress_adapters_to_bank(session.store()->adapters(), *backend, options, std::nullopt, 1);
        QVERIFY(fb.bank.mean_error() < 1e-6); // precondition: rank 4, k = 2 is exact for this fleet
        auto bank = std::make_shared<const bank::compressed_bank>(std::move(fb.bank));

        ui::ErrorView view(&session);
        view.resize(1280, 800);
        view.setBank(bank);
        QSignalSpy finished(&view, &ui::ErrorView::sweepFinished);
        view.startRankSweep();
        QVERIFY(view.isSweepRunning());
        QVERIFY(finished.wait(120'000));
        QCOMPARE(finished.takeFirst().at(0).toBool(), true);
        const auto& points = view.sweepPoints();
        QCOMPARE(int(points.size()), 3);
        QCOMPARE(points[0].first, 1);
        QCOMPARE(points[1].first, 2);
        QCOMPARE(points[2].first, 4);
        qInfo("sweep: r1 %.5f r2 %.5f r4 %.3g", points[0].second, points[1].second, points[2].second);
        // The point at the bank's rank is the bank's own error on the same modules (here ~0 both).
        QVERIFY(std::abs(points[2].second - view.sweepBankErrorOnSample()) < 1e-5);
        QVERIFY(points[2].second < 1e-5);
        QVERIFY(points[1].second > 1e-3);
        QVERIFY(points[0].second > points[1].second);
        // The curve is on the plot with the current rank marked.
        QVERIFY(view.sweepPlot()->graphCount() >= 2);
        QCOMPARE(view.sweepPlot()->graph(0)->dataCount(), 3);
        QVERIFY(verticalLineAt(view.sweepPlot(), 4));
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        saveShot(view, "error_view.png");

        // The same fleet at rank 2 and one cluster: errors spread over adapters, layers and modules.
        options.jd.rank = 2;
        options.clusters = 1;
        auto lossy =
            bank::compress_adapters_to_bank(session.store()->adapters(), *backend, options, std::nullopt, 1);
        ui::ErrorView lossyView(&session);
        lossyView.resize(1280, 800);
        lossyView.setBank(std::make_shared<const bank::compressed_bank>(std::move(lossy.bank)));
        lossyView.show();
        QVERIFY(QTest::qWaitForWindowExposed(&lossyView));
        saveShot(lossyView, "error_view_lossy.png");
        // A lossy bank: the sweep's point at its rank (2) is its own error on the sampled modules, and the
        // legend says the sweep kept the bank's clusters.
        QSignalSpy lossyDone(&lossyView, &ui::ErrorView::sweepFinished);
        lossyView.startRankSweep();
        QVERIFY(lossyDone.wait(120'000));
        QCOMPARE(lossyDone.takeFirst().at(0).toBool(), true);
        const auto& lp = lossyView.sweepPoints();
        QVERIFY(lp.size() >= 2 && lp[1].first == 2);
        const double onSample = lossyView.sweepBankErrorOnSample();
        qInfo("lossy: sweep at rank 2 %.6f, bank on the sample %.6f", lp[1].second, onSample);
        QVERIFY(onSample > 1e-3);
        QVERIFY2(std::abs(lp[1].second - onSample) <= 0.02 * onSample,
                 qPrintable(QString("%1 vs %2").arg(lp[1].second).arg(onSample)));
        QVERIFY(legendHas(lossyView.sweepPlot(), "Sweep: "));
        QVERIFY(legendHas(lossyView.sweepPlot(),
                          "This bank (rank 2) on the same modules: " + ui::formatError(onSample)));
        saveShot(lossyView, "error_view_lossy_sweep.png");

        view.startRankSweep();
        QVERIFY(view.isSweepRunning());
        view.cancelRankSweep();
        QVERIFY(finished.wait(60'000));
        QCOMPARE(finished.takeFirst().at(0).toBool(), false);
        QVERIFY(!view.isSweepRunning());
        QVERIFY2(view.sweepStatus().contains("cancelled"), qPrintable(view.sweepStatus()));
        QCOMPARE(int(view.sweepPoints().size()), 3); // the last finished sweep stays
    }

    // Near-equal cells (what a good bank gives: every cell ~0.004) read as distinct numbers in the one
    // error format, and the colour scale spans the cells' own range.
    void heatMapLabelsAreDistinct() {
        auto bank =
            std::make_shared<bank::compressed_bank>(test::make_random_bank(compress::jd_method::full, 4));
        const std::vector<double> perModule = {0.00412, 0.00398, 0.00405, 0.00431, 0.00377};
        for (auto& a : bank->adapters)
            for (std::size_t m = 0; m < a.errors.size(); ++m)
                if (std::isfinite(a.errors[m])) a.errors[m] = perModule[m % perModule.size()];
        ui::Session session;
        ui::ErrorView view(&session);
        view.resize(1200, 700);
        view.setBank(bank);
        const auto stats = analysis::layer_module_errors(*bank);
        QSet<QString> expected, shown;
        for (double v : stats.mean)
            if (std::isfinite(v)) expected.insert(ui::formatError(v));
        for (int i = 0; i < view.heatMapPlot()->itemCount(); ++i)
            if (auto* t = qobject_cast<QCPItemText*>(view.heatMapPlot()->item(i)))
                if (t->text() != "absent") shown.insert(t->text());
        QCOMPARE(shown, expected);
        QVERIFY2(expected.size() >= 3, "the cells should differ"); // distinct values, distinct labels
        for (const QString& label : shown)
            QVERIFY2(label.startsWith("0.00") && label.size() == 7, qPrintable(label)); // "0.00412"
        QCPColorScale* scale = nullptr;
        for (int i = 0; i < view.heatMapPlot()->plotLayout()->elementCount(); ++i)
            scale =
                scale ? scale : qobject_cast<QCPColorScale*>(view.heatMapPlot()->plotLayout()->elementAt(i));
        QVERIFY(scale);
        QVERIFY2(scale->dataRange().lower > 0.003, "the scale starts at the smallest cell, not at 0");
    }

    void sweepNeedsTheFleet() {
        ui::Session session; // empty fleet
        ui::ErrorView view(&session);
        view.setBank(std::make_shared<const bank::compressed_bank>(
            test::make_random_bank(compress::jd_method::diag, 2)));
        view.startRankSweep();
        QVERIFY(!view.isSweepRunning());
        QVERIFY2(view.sweepStatus().contains("import"), qPrintable(view.sweepStatus()));
    }
};

QTEST_MAIN(TestErrorView)
#include "test_error_view.moc"
