// ClusterView (see cluster_view.hpp).
#include "ui/clusters/cluster_view.hpp"

#include "engine/analysis/cluster_map.hpp"
#include "ui/common/plot_style.hpp"
#include "ui/common/text_format.hpp"

#include <QHBoxLayout>
#include <QHelpEvent>
#include <QLabel>
#include <QMouseEvent>
#include <QStackedWidget>
#include <QToolTip>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

namespace lorafleet::ui {

namespace {

constexpr std::size_t kFeatureBudget = 640; // 4 sampled modules: keeps 5000 adapters well under a second
constexpr int kMaxLegendClusters = 32;      // beyond that the bar chart (same colours) is the legend

} // namespace

ClusterView::ClusterView(Session* session, QWidget* parent) : QWidget(parent), m_session(session) {
    m_stack = new QStackedWidget(this);
    m_empty = new QLabel(tr("Compress the fleet to see its clusters: a map of the adapters and the size of "
                            "every cluster."),
                         this);
    m_empty->setAlignment(Qt::AlignCenter);
    m_empty->setWordWrap(true);

    auto* page = new QWidget(this);
    auto* pageLayout = new QVBoxLayout(page);
    m_caption = new QLabel(page);
    m_caption->setWordWrap(true);
    m_map = new QCustomPlot(page);
    m_sizes = new QCustomPlot(page);
    m_map->setMinimumSize(320, 240);
    m_sizes->setMinimumSize(220, 240);
    auto* plots = new QHBoxLayout;
    plots->addWidget(m_map, 3);
    plots->addWidget(m_sizes, 2);
    pageLayout->addWidget(m_caption);
    pageLayout->addLayout(plots, 1);
    m_stack->addWidget(m_empty);
    m_stack->addWidget(page);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_stack);

    // Map: click selects a point, a drag draws a selection rectangle, the wheel zooms, Ctrl adds.
    m_map->setNoAntialiasingOnDrag(true);
    m_map->setInteractions(QCP::iSelectPlottables | QCP::iMultiSelect | QCP::iRangeZoom);
    m_map->setMultiSelectModifier(Qt::ControlModifier);
    m_map->setSelectionRectMode(QCP::srmSelect);
    m_map->setMouseTracking(true);
    styleAxis(m_map->xAxis, tr("PC 1"));
    styleAxis(m_map->yAxis, tr("PC 2"));
    // The legend goes under the plot (inside, it would hide points wherever they happen to fall).
    m_map->legend->setVisible(true);
    m_map->legend->setFont(plotFont(-1));
    m_map->legend->setBorderPen(Qt::NoPen);
    m_map->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    m_map->legend->setWrap(8);
    m_map->axisRect()->insetLayout()->take(m_map->legend);
    m_map->plotLayout()->addElement(1, 0, m_map->legend);
    m_map->plotLayout()->setRowStretchFactor(1, 0.001);
    m_map->plotLayout()->setRowSpacing(0);
    connect(m_map, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent*) { resetMapRange(); });
    connect(m_map, &QCustomPlot::selectionChangedByUser, this, &ClusterView::onMapSelectionChangedByUser);
    connect(m_map, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) { showTooltipAt(e->pos()); });
    m_map->installEventFilter(this);

    m_sizes->setInteractions(QCP::iSelectPlottables);
    styleAxis(m_sizes->xAxis, tr("Cluster"));
    styleAxis(m_sizes->yAxis, tr("Adapters"));
    m_sizes->xAxis->grid()->setVisible(false);
    addTitle(m_sizes, tr("Cluster sizes"));
    connect(m_sizes, &QCustomPlot::plottableClick, this, [this](QCPAbstractPlottable* p, int, QMouseEvent*) {
        bool ok = false;
        const int cluster = p->property("cluster").toInt(&ok);
        if (ok) onSizeBarClicked(cluster);
    });
    rebuild();
}

ClusterView::~ClusterView() = default;

QColor ClusterView::clusterColor(int cluster) {
    // Tableau 10 first (the common small k), then golden-ratio hue steps over three saturation/value
    // levels: every cluster number gets its own colour (no cycling), neighbours in number differ in hue.
    static const QColor palette[] = {QColor(0x4e, 0x79, 0xa7), QColor(0xf2, 0x8e, 0x2b),
                                     QColor(0xe1, 0x57, 0x59), QColor(0x76, 0xb7, 0xb2),
                                     QColor(0x59, 0xa1, 0x4f), QColor(0xed, 0xc9, 0x48),
                                     QColor(0xb0, 0x7a, 0xa1), QColor(0xff, 0x9d, 0xa7),
                                     QColor(0x9c, 0x75, 0x5f), QColor(0xba, 0xb0, 0xac)};
    constexpr int n = int(std::size(palette));
    if (cluster < 0) return QColor(0x80, 0x80, 0x80);
    if (cluster < n) return palette[cluster];
    const int j = cluster - n;
    const double hue = std::fmod(j * 0.618033988749895 + 0.05, 1.0);
    static const double levels[3][2] = {{0.75, 0.80}, {0.55, 0.60}, {0.90, 0.55}}; // (saturation, value)
    return QColor::fromHsvF(float(hue), float(levels[j % 3][0]), float(levels[j % 3][1]));
}

void ClusterView::setBank(std::shared_ptr<const lorafleet::bank::compressed_bank> bank) {
    m_bank = std::move(bank);
    rebuild();
}

QString ClusterView::captionText() const {
    return m_caption->text();
}

bool ClusterView::showsEmptyState() const {
    return m_stack->currentWidget() == m_empty;
}

QCPGraph* ClusterView::clusterGraph(int cluster) const {
    if (!m_bank || cluster < 0 || cluster >= int(m_graphAdapters.size())) return nullptr;
    for (int i = 0; i < m_map->graphCount(); ++i)
        if (m_map->graph(i)->property("cluster").toInt() == cluster) return m_map->graph(i);
    return nullptr;
}

void ClusterView::rebuild() {
    m_map->clearPlottables();
    m_sizes->clearPlottables();
    m_points.clear();
    m_graphAdapters.clear();
    if (!m_bank || m_bank->adapters.empty()) {
        m_stack->setCurrentWidget(m_empty);
        m_map->replot();
        m_sizes->replot();
        return;
    }
    m_stack->setCurrentIndex(1);
    const auto& bank = *m_bank;
    const analysis::cluster_map map = analysis::compute_cluster_map(bank, kFeatureBudget);
    const std::size_t n = bank.adapters.size();
    m_points.resize(n);
    for (std::size_t i = 0; i < n; ++i)
        m_points[i] = {map.x[i], map.y[i]};

    const int k = std::max(bank.clusters, 1);
    m_graphAdapters.assign(std::size_t(k), {});
    for (std::size_t i = 0; i < n; ++i)
        m_graphAdapters[std::size_t(std::clamp(bank.adapters[i].cluster, 0, k - 1))].push_back(int(i));

    const double pointSize = n > 2000 ? 5.0 : n > 500 ? 6.0 : 8.0;
    for (int c = 0; c < k; ++c) {
        auto& members = m_graphAdapters[std::size_t(c)];
        // QCPGraph keeps its data sorted by key: sort the members the same way so that data index j is
        // members[j] (stable on ties, so the order is deterministic).
        std::stable_sort(members.begin(), members.end(), [&](int a, int b) {
            return m_points[std::size_t(a)].first < m_points[std::size_t(b)].first;
        });
        QVector<double> xs, ys;
        xs.reserve(qsizetype(members.size()));
        ys.reserve(qsizetype(members.size()));
        for (int i : members) {
            xs << m_points[std::size_t(i)].first;
            ys << m_points[std::size_t(i)].second;
        }
        auto* g = m_map->addGraph();
        g->setProperty("cluster", c);
        g->setData(xs, ys, true);
        g->setLineStyle(QCPGraph::lsNone);
        const QColor color = clusterColor(c);
        QColor fill = color;
        fill.setAlpha(200);
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, fill, pointSize));
        g->setPen(QPen(color));
        g->setSelectable(QCP::stMultipleDataRanges);
        g->selectionDecorator()->setPen(QPen(Qt::black));
        g->selectionDecorator()->setScatterStyle(
            QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(Qt::black, 2.0), QBrush(color), pointSize + 4),
            QCPScatterStyle::spAll);
        // Many clusters: short entries ("12 (40)": cluster and its size) so 8 columns fit under the map.
        g->setName(k <= 8 ? tr("Cluster %1 (%2)").arg(c).arg(members.size())
                          : tr("%1 (%2)").arg(c).arg(members.size()));
        if (members.empty()) g->removeFromLegend();
    }
    m_map->legend->setVisible(k <= kMaxLegendClusters);
    m_map->xAxis->setLabel(tr("PC 1 (%1% of variance)").arg(100.0 * map.explained[0], 0, 'f', 1));
    m_map->yAxis->setLabel(tr("PC 2 (%1% of variance)").arg(100.0 * map.explained[1], 0, 'f', 1));
    resetMapRange();

    // Sizes: one QCPBars per cluster so every bar has its cluster's colour and a click names the cluster.
    int largest = 0;
    for (int c = 0; c < k; ++c) {
        const int size = int(m_graphAdapters[std::size_t(c)].size());
        largest = std::max(largest, size);
        auto* bars = new QCPBars(m_sizes->xAxis, m_sizes->yAxis);
        bars->setProperty("cluster", c);
        bars->setWidth(0.75);
        bars->addData(c, size);
        bars->setPen(QPen(clusterColor(c).darker(130)));
        bars->setBrush(clusterColor(c));
        bars->setSelectable(QCP::stWhole);
        bars->selectionDecorator()->setPen(QPen(Qt::black, 2.0));
        bars->selectionDecorator()->setBrush(clusterColor(c).lighter(115));
        bars->setName(tr("Cluster %1").arg(c));
    }
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    const int labelStep = std::max(1, int(std::ceil(k / 16.0)));
    for (int c = 0; c < k; c += labelStep)
        ticker->addTick(c, QString::number(c));
    m_sizes->xAxis->setTicker(ticker);
    m_sizes->xAxis->setRange(-0.6, k - 0.4);
    m_sizes->yAxis->setRange(0, std::max(1.0, largest * 1.12));
    auto yTicker = QSharedPointer<QCPAxisTicker>::create();
    yTicker->setTickStepStrategy(QCPAxisTicker::tssReadability);
    m_sizes->yAxis->setTicker(yTicker);
    m_sizes->yAxis->setNumberFormat(QStringLiteral("f"));
    m_sizes->yAxis->setNumberPrecision(0);
    m_sizes->replot();

    m_caption->setText(
        tr("<b>%1</b> in <b>%2</b> (%3, rank %4). Each dot is one adapter, coloured by the cluster it was "
           "compressed with; adapters that change the model in similar directions lie close together "
           "(%5). Legend: cluster (adapters). Bars: adapters per cluster, in the same colours%6. Click or "
           "drag to select, Ctrl adds, "
           "the wheel zooms, double-click resets; click a bar to select a whole cluster.")
            .arg(plural(qint64(n), tr("adapter"), tr("adapters")))
            .arg(plural(k, tr("cluster"), tr("clusters")))
            .arg(QString::fromLatin1(compress::to_string(bank.kind)))
            .arg(bank.rank)
            .arg(map.modules_used == bank.modules.size()
                     ? tr("measured on every module")
                     : tr("measured on %1 of %2 modules").arg(map.modules_used).arg(bank.modules.size()))
            .arg(k > kMaxLegendClusters
                     ? tr(" (they are the legend: %1 clusters are too many to list)").arg(k)
                     : QString()));
}

void ClusterView::resetMapRange() {
    m_map->rescaleAxes();
    const auto pad = [](QCPAxis* axis) {
        const QCPRange r = axis->range();
        const double span = r.size() > 0 ? r.size() : 1.0;
        axis->setRange(r.lower - 0.08 * span, r.upper + 0.08 * span);
    };
    pad(m_map->xAxis);
    pad(m_map->yAxis);
    m_map->replot();
}

QStringList ClusterView::selectedAdapters() const {
    QStringList names;
    if (!m_bank) return names;
    std::vector<int> picked;
    for (int gi = 0; gi < m_map->graphCount(); ++gi) {
        auto* g = m_map->graph(gi);
        const int c = g->property("cluster").toInt();
        const auto& members = m_graphAdapters[std::size_t(c)];
        for (const QCPDataRange& range : g->selection().dataRanges())
            for (int j = range.begin(); j < range.end(); ++j)
                if (j >= 0 && j < int(members.size())) picked.push_back(members[std::size_t(j)]);
    }
    std::sort(picked.begin(), picked.end());
    picked.erase(std::unique(picked.begin(), picked.end()), picked.end());
    for (int i : picked)
        names << QString::fromStdString(m_bank->adapters[std::size_t(i)].name);
    return names;
}

void ClusterView::selectAdapters(const QStringList& names) {
    if (!m_bank) return;
    std::unordered_map<std::string, int> index;
    index.reserve(m_bank->adapters.size());
    for (std::size_t i = 0; i < m_bank->adapters.size(); ++i)
        index.emplace(m_bank->adapters[i].name, int(i));
    std::vector<int> adapters;
    for (const QString& name : names) {
        const auto it = index.find(name.toStdString());
        if (it != index.end()) adapters.push_back(it->second);
    }
    applySelection(adapters);
}

void ClusterView::applySelection(const std::vector<int>& adapters) {
    if (!m_bank) return;
    std::vector<char> wanted(m_bank->adapters.size(), 0);
    for (int i : adapters)
        if (i >= 0 && i < int(wanted.size())) wanted[std::size_t(i)] = 1;
    m_applying = true;
    for (int gi = 0; gi < m_map->graphCount(); ++gi) {
        auto* g = m_map->graph(gi);
        const auto& members = m_graphAdapters[std::size_t(g->property("cluster").toInt())];
        QCPDataSelection selection;
        for (int j = 0; j < int(members.size()); ++j)
            if (wanted[std::size_t(members[std::size_t(j)])])
                selection.addDataRange(QCPDataRange(j, j + 1), false);
        selection.simplify();
        g->setSelection(selection);
    }
    for (int p = 0; p < m_sizes->plottableCount(); ++p)
        m_sizes->plottable(p)->setSelection(QCPDataSelection());
    m_applying = false;
    m_map->replot();
    m_sizes->replot();
}

void ClusterView::emitSelection(const std::vector<int>& adapters) {
    QStringList names;
    for (int i : adapters)
        names << QString::fromStdString(m_bank->adapters[std::size_t(i)].name);
    emit adaptersSelected(names);
}

void ClusterView::onMapSelectionChangedByUser() {
    if (m_applying || !m_bank) return;
    for (int p = 0; p < m_sizes->plottableCount(); ++p)
        m_sizes->plottable(p)->setSelection(QCPDataSelection());
    m_sizes->replot(QCustomPlot::rpQueuedReplot);
    emit adaptersSelected(selectedAdapters());
}

void ClusterView::onSizeBarClicked(int cluster) {
    if (!m_bank || cluster < 0 || cluster >= int(m_graphAdapters.size())) return;
    std::vector<int> members = m_graphAdapters[std::size_t(cluster)];
    std::sort(members.begin(), members.end());
    applySelection(members);
    // applySelection cleared the bars; keep the clicked one highlighted.
    for (int p = 0; p < m_sizes->plottableCount(); ++p)
        if (m_sizes->plottable(p)->property("cluster").toInt() == cluster)
            m_sizes->plottable(p)->setSelection(QCPDataSelection(QCPDataRange(0, 1)));
    m_sizes->replot();
    emitSelection(members);
}

int ClusterView::adapterAt(const QPoint& pos, double maxPixels) const {
    if (!m_bank) return -1;
    int best = -1;
    double bestD2 = maxPixels * maxPixels;
    for (std::size_t i = 0; i < m_points.size(); ++i) {
        const double dx = m_map->xAxis->coordToPixel(m_points[i].first) - pos.x();
        const double dy = m_map->yAxis->coordToPixel(m_points[i].second) - pos.y();
        const double d2 = dx * dx + dy * dy;
        if (d2 <= bestD2) {
            bestD2 = d2;
            best = int(i);
        }
    }
    return best;
}

QString ClusterView::toolTipText(int adapter) const {
    if (!m_bank || adapter < 0 || adapter >= int(m_bank->adapters.size())) return {};
    const auto& a = m_bank->adapters[std::size_t(adapter)];
    return tr("<b>%1</b><br>cluster %2<br>mean error %3<br>source rank %4")
        .arg(QString::fromStdString(a.name).toHtmlEscaped())
        .arg(a.cluster)
        .arg(formatError(a.mean_error()))
        .arg(a.source_rank);
}

void ClusterView::showTooltipAt(const QPoint& pos) {
    const int adapter = adapterAt(pos);
    if (adapter < 0) {
        QToolTip::hideText();
        return;
    }
    QToolTip::showText(m_map->mapToGlobal(pos), toolTipText(adapter), m_map);
}

bool ClusterView::eventFilter(QObject* watched, QEvent* event) {
    if (watched == m_map && event->type() == QEvent::ToolTip) {
        showTooltipAt(static_cast<QHelpEvent*>(event)->pos());
        return true;
    }
    return QWidget::eventFilter(watched, event);
}

} // namespace lorafleet::ui
