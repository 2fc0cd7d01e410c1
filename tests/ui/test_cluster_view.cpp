// The Clusters tab (the map's projection is tested in tests/engine/analysis/test_cluster_map.cpp): the
// ClusterView fed a planted bank: one graph per cluster holding
// exactly its members, selectAdapters() selecting exactly the named points without a signal, a mouse
// click on a point and on a cluster's bar emitting adaptersSelected with the right names, the tooltip,
// a 5000-adapter bank, and an offscreen rendering that is not blank (saved to $LORAFLEET_TEST_SHOTS).
#include "engine/core/error.hpp"
#include "tests/support/planted_bank.hpp"
#include "tests/support/planted_fleet.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/clusters/cluster_view.hpp"

#include <QSignalSpy>
#include <QtTest/QtTest>

#include <qcustomplot.h>

#include <cmath>
#include <set>

using namespace lorafleet;

namespace {

// A large bank built directly (no compression): `n` adapters on 4 modules, rank r, k clusters with
// random orthonormal-ish bases and random cores. Only for the view's scale test.
bank::compressed_bank largeBank(int n, int k, int r) {
    bank::compressed_bank b;
    b.kind = compress::jd_method::full;
    b.rank = r;
    b.clusters = k;
    random_stream g(3);
    for (int m = 0; m < 4; ++m)
        b.modules.push_back(
            {"model.layers." + std::to_string(m / 2) + ".self_attn." + (m % 2 ? "v_proj" : "q_proj"), m / 2,
             m % 2 ? "v_proj" : "q_proj", 64, 64});
    b.bases.assign(4, std::vector<bank::cluster_basis>(std::size_t(k)));
    for (auto& perModule : b.bases)
        for (auto& basis : perModule) {
            basis.u.resize(64 * std::size_t(r));
            basis.vt.resize(std::size_t(r) * 64);
            for (auto& v : basis.u)
                v = float(g.normal() / 8.0);
            for (auto& v : basis.vt)
                v = float(g.normal() / 8.0);
        }
    b.cores.assign(4, std::vector<float>(std::size_t(n) * std::size_t(r) * std::size_t(r)));
    for (auto& cores : b.cores)
        for (auto& v : cores)
            v = float(g.normal());
    for (int i = 0; i < n; ++i) {
        bank::bank_adapter a;
        a.name = "adapter-" + std::to_string(i);
        a.cluster = i % k;
        a.source_rank = r;
        a.errors.assign(4, 0.01 * (i % 17));
        b.adapters.push_back(std::move(a));
    }
    return b;
}

void saveShot(QWidget& w, const QString& name) {
    const QImage image = w.grab().toImage();
    QVERIFY(!image.isNull());
    QCOMPARE(image.size(), w.size() * w.devicePixelRatioF());
    QVERIFY2(test::distinctColours(image) > 20, "the rendering looks blank");
    const QString dir = qEnvironmentVariable("LORAFLEET_TEST_SHOTS");
    if (!dir.isEmpty()) QVERIFY(image.save(dir + "/" + name));
}

} // namespace

class TestClusterView : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { test::isolateSettings(); }

    // Eight noisy planted groups of 25: one graph per cluster holding all 200 (rendered for a look).
    void noisyPlantedFleetRendering() {
        std::vector<int> labels;
        const auto bank =
            std::make_shared<const bank::compressed_bank>(test::planted_bank(8, 25, 4, &labels, 0.1));
        ui::ClusterView view(nullptr);
        view.resize(1280, 760);
        view.setBank(bank);
        QCOMPARE(view.mapPlot()->graphCount(), 8);
        int total = 0;
        for (int c = 0; c < 8; ++c)
            total += view.clusterGraph(c)->dataCount();
        QCOMPARE(total, 200);
        saveShot(view, "cluster_view_noisy.png");
    }

    void emptyStateWithoutABank() {
        ui::ClusterView view(nullptr);
        QVERIFY(view.showsEmptyState());
        view.setBank(std::make_shared<const bank::compressed_bank>(test::planted_bank(2, 3, 2)));
        QVERIFY(!view.showsEmptyState());
        view.setBank(nullptr);
        QVERIFY(view.showsEmptyState());
        QVERIFY(view.selectedAdapters().isEmpty());
        QCOMPARE(view.mapPlot()->graphCount(), 0);
    }

    void oneGraphPerClusterWithItsMembers() {
        const auto bank = std::make_shared<const bank::compressed_bank>(test::planted_bank(3, 5, 3));
        ui::ClusterView view(nullptr);
        view.setBank(bank);
        QCOMPARE(view.mapPlot()->graphCount(), 3);
        std::set<QRgb> colors;
        for (int c = 0; c < 3; ++c) {
            QCPGraph* g = view.clusterGraph(c);
            QVERIFY(g);
            int members = 0;
            for (const auto& a : bank->adapters)
                members += a.cluster == c;
            QCOMPARE(g->dataCount(), members);
            colors.insert(g->scatterStyle().pen().color().rgb()); // ssDisc fills with the pen colour
            // Every point of the graph is one of the cluster's adapters at its map position.
            for (int j = 0; j < g->dataCount(); ++j) {
                const auto it = g->data()->at(j);
                bool found = false;
                for (std::size_t i = 0; i < bank->adapters.size(); ++i)
                    found = found || (bank->adapters[i].cluster == c && view.points()[i].first == it->key &&
                                      view.points()[i].second == it->value);
                QVERIFY(found);
            }
        }
        QCOMPARE(int(colors.size()), 3);
        // The sizes chart: one bar per cluster with its member count.
        QCOMPARE(view.sizePlot()->plottableCount(), 3);
        for (int p = 0; p < 3; ++p) {
            auto* bars = qobject_cast<QCPBars*>(view.sizePlot()->plottable(p));
            QVERIFY(bars);
            QCOMPARE(int(bars->data()->at(0)->value),
                     view.clusterGraph(int(bars->data()->at(0)->key))->dataCount());
        }
    }

    void selectAdaptersSelectsExactlyThoseWithoutEcho() {
        const auto bank = std::make_shared<const bank::compressed_bank>(test::planted_bank(3, 5, 3));
        ui::ClusterView view(nullptr);
        view.setBank(bank);
        QSignalSpy spy(&view, &ui::ClusterView::adaptersSelected);
        const QStringList wanted = {QString::fromStdString(bank->adapters[1].name),
                                    QString::fromStdString(bank->adapters[7].name),
                                    QString::fromStdString(bank->adapters[12].name)};
        view.selectAdapters({wanted[2], "no-such-adapter", wanted[0], wanted[1]});
        QCOMPARE(view.selectedAdapters(), wanted);
        int selectedPoints = 0;
        for (int c = 0; c < 3; ++c)
            selectedPoints += view.clusterGraph(c)->selection().dataPointCount();
        QCOMPARE(selectedPoints, 3);
        view.selectAdapters({});
        QVERIFY(view.selectedAdapters().isEmpty());
        QCOMPARE(spy.count(), 0);
    }

    void clicksEmitTheSelectedNames() {
        const auto bank = std::make_shared<const bank::compressed_bank>(test::planted_bank(3, 6, 3));
        ui::ClusterView view(nullptr);
        view.resize(1100, 650);
        view.setBank(bank);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        view.mapPlot()->replot();
        QSignalSpy spy(&view, &ui::ClusterView::adaptersSelected);

        // A point with no other point within 12 px, clicked at its pixel position.
        const auto pixel = [&](std::size_t i) {
            return QPointF(view.mapPlot()->xAxis->coordToPixel(view.points()[i].first),
                           view.mapPlot()->yAxis->coordToPixel(view.points()[i].second));
        };
        int isolated = -1;
        for (std::size_t i = 0; i < bank->adapters.size() && isolated < 0; ++i) {
            bool alone = true;
            for (std::size_t j = 0; j < bank->adapters.size(); ++j)
                if (j != i && QLineF(pixel(i), pixel(j)).length() < 12) alone = false;
            if (alone) isolated = int(i);
        }
        QVERIFY2(isolated >= 0, "no isolated point to click");
        const QPoint at = pixel(std::size_t(isolated)).toPoint();
        QCOMPARE(view.adapterAt(at), isolated);
        const QString name = QString::fromStdString(bank->adapters[std::size_t(isolated)].name);
        QVERIFY(view.toolTipText(isolated).contains(name));
        QVERIFY(view.toolTipText(isolated).contains(
            QString("cluster %1").arg(bank->adapters[std::size_t(isolated)].cluster)));
        QTest::mouseClick(view.mapPlot(), Qt::LeftButton, {}, at);
        QCOMPARE(spy.count(), 1);
        QCOMPARE(spy.takeFirst().at(0).toStringList(), QStringList{name});
        QCOMPARE(view.selectedAdapters(), QStringList{name});

        // A click on cluster 1's bar selects (and emits) all of cluster 1.
        QStringList members;
        for (const auto& a : bank->adapters)
            if (a.cluster == 1) members << QString::fromStdString(a.name);
        auto* sizes = view.sizePlot();
        const QPoint bar(int(sizes->xAxis->coordToPixel(1)),
                         int(sizes->yAxis->coordToPixel(members.size() / 2.0)));
        QTest::mouseClick(sizes, Qt::LeftButton, {}, bar);
        QCOMPARE(spy.count(), 1);
        QCOMPARE(spy.takeFirst().at(0).toStringList(), members);
        QCOMPARE(view.selectedAdapters(), members);
        saveShot(view, "cluster_view.png");
    }

    void handlesFiveThousandAdapters() {
        const auto bank = std::make_shared<const bank::compressed_bank>(largeBank(5000, 25, 8));
        ui::ClusterView view(nullptr);
        view.resize(1280, 760);
        QElapsedTimer timer;
        timer.start();
        view.setBank(bank);
        qInfo("setBank with 5000 adapters: %lld ms", timer.elapsed());
        QCOMPARE(view.mapPlot()->graphCount(), 25);
        int total = 0;
        for (int c = 0; c < 25; ++c)
            total += view.clusterGraph(c)->dataCount();
        QCOMPARE(total, 5000);
        QStringList some;
        for (int i = 0; i < 5000; i += 10)
            some << QString("adapter-%1").arg(i);
        view.selectAdapters(some);
        QCOMPARE(view.selectedAdapters().size(), 500);
        saveShot(view, "cluster_view_5000.png");
    }

    // 32 clusters: 32 different colours that a reader can tell apart (no two closer than 15 in RGB), the
    // legend still shown with an entry per cluster; beyond 32 the caption says the bars are the legend.
    // The caption is plain language (no "subspace signature", no "sketched").
    void thirtyTwoClustersHaveDistinctColoursAndALegend() {
        QSet<QRgb> colours;
        double closest = 1e9;
        for (int c = 0; c < 32; ++c) {
            const QColor a = ui::ClusterView::clusterColor(c);
            colours.insert(a.rgb());
            for (int d = 0; d < c; ++d) {
                const QColor b = ui::ClusterView::clusterColor(d);
                closest = std::min(closest, std::hypot(std::hypot(a.red() - b.red(), a.green() - b.green()),
                                                       double(a.blue() - b.blue())));
            }
        }
        QCOMPARE(int(colours.size()), 32);
        QVERIFY2(closest >= 15, qPrintable(QString::number(closest)));
        QCOMPARE(ui::ClusterView::clusterColor(40), ui::ClusterView::clusterColor(40)); // stable

        const auto bank = std::make_shared<const bank::compressed_bank>(largeBank(320, 32, 4));
        ui::ClusterView view(nullptr);
        view.resize(1400, 900);
        view.setBank(bank);
        QVERIFY(view.mapPlot()->legend->visible());
        QCOMPARE(view.mapPlot()->legend->itemCount(), 32);
        QSet<QRgb> drawn;
        for (int c = 0; c < 32; ++c)
            drawn.insert(view.clusterGraph(c)->pen().color().rgb());
        QCOMPARE(int(drawn.size()), 32);
        const QString caption = view.captionText();
        QVERIFY2(caption.contains("Each dot is one adapter"), qPrintable(caption));
        QVERIFY2(!caption.contains("signature") && !caption.contains("sketch"), qPrintable(caption));
        saveShot(view, "cluster_view_32.png");

        view.setBank(std::make_shared<const bank::compressed_bank>(largeBank(400, 40, 4)));
        QVERIFY(!view.mapPlot()->legend->visible());
        QVERIFY2(view.captionText().contains("they are the legend"), qPrintable(view.captionText()));
    }
};

QTEST_MAIN(TestClusterView)
#include "test_cluster_view.moc"
