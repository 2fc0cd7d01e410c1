// ServeCharts (see serve_charts.hpp).
#include "ui/serve/serve_charts.hpp"

#include "ui/common/plot_style.hpp"
#include "ui/common/text_format.hpp"
#include "ui/serve/serve_history.hpp"

#include <QGridLayout>
#include <QLocale>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace lorafleet::ui {

namespace {

constexpr double kMinSpanSeconds = 5.0; // the time axis spans at least this much
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Tableau 10: the palette the other tabs use.
const QColor kBlue(0x4e, 0x79, 0xa7), kOrange(0xf2, 0x8e, 0x2b), kRed(0xe1, 0x57, 0x59),
    kTeal(0x76, 0xb7, 0xb2), kGreen(0x59, 0xa1, 0x4f), kPurple(0xb0, 0x7a, 0xa1), kGrey(0xba, 0xb0, 0xac);

// The memory chart's stacked layers. On the host the last two are the server's runtime and the rest of
// the process (a hatched band, not to scale); on a device they are other used and free.
enum MemoryLayer { kWeights, kAdapters, kKv, kRuntime, kRest, kLayers };
const QColor kLayerColors[kLayers] = {kBlue, kGreen, kOrange, kPurple, kGrey};
constexpr double kGibThresholdMiB = 8 * 1024.0; // a device larger than this is drawn in GiB

QBrush layerBrush(int layer, bool device) {
    if (layer == kRest)
        return device ? QBrush(QColor(0xe9, 0xe6, 0xe4))
                      : QBrush(kLayerColors[layer].darker(130), Qt::BDiagPattern);
    QColor fill = kLayerColors[layer];
    fill.setAlpha(170);
    return QBrush(fill);
}

QCPGraph* addLine(QCustomPlot* plot, const QString& name, const QColor& color, QCPAxis* keyAxis,
                  QCPAxis* valueAxis, Qt::PenStyle style = Qt::SolidLine) {
    QCPGraph* g = plot->addGraph(keyAxis, valueAxis);
    g->setName(name);
    g->setPen(QPen(color, 2, style));
    return g;
}

// A legend between the title and the axes, so it never hides the newest data; fitLegend() sets how many
// columns it wraps into.
void setupLegend(QCustomPlot* plot) {
    plot->legend->setVisible(true);
    plot->legend->setFont(plotFont(-2, 7));
    plot->legend->setBrush(Qt::NoBrush);
    plot->legend->setBorderPen(Qt::NoPen);
    plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    plot->legend->setColumnSpacing(12);
    plot->legend->setRowSpacing(0);
    plot->legend->setMargins(QMargins(4, 0, 4, 0));
    plot->axisRect()->insetLayout()->take(plot->legend);
    plot->plotLayout()->insertRow(1);
    plot->plotLayout()->addElement(1, 0, plot->legend);
    plot->plotLayout()->setRowStretchFactor(1, 0.001);
}

// As many columns as the widest entry allows in the chart's width (at least one).
void fitLegend(QCustomPlot* plot) {
    QCPLegend* legend = plot->legend;
    int n = 0, widest = 1;
    for (int i = 0; i < legend->itemCount(); ++i) // cells of the grid: a wrapped last row has empty ones
        if (QCPAbstractLegendItem* item = legend->item(i)) {
            ++n;
            widest = std::max(widest, item->minimumOuterSizeHint().width());
        }
    if (n == 0) return;
    const QMargins m = legend->margins();
    const int available = plot->width() - m.left() - m.right() - 8;
    const int spacing = legend->columnSpacing();
    const int columns = std::clamp((available + spacing) / (widest + spacing), 1, n);
    if (legend->wrap() != columns || legend->columnCount() > columns) {
        legend->setWrap(columns);
        legend->setFillOrder(QCPLayoutGrid::foColumnsFirst, true);
    }
}

// A layer's size for the legend, in the app's one size format (the sample holds MiB of whole bytes).
QString layerSize(double mib) {
    return formatBytes(quint64(std::llround(std::max(0.0, mib) * 1024.0 * 1024.0)));
}

} // namespace

ServeCharts::ServeCharts(QWidget* parent) : QWidget(parent) {
    auto* charts = new QGridLayout(this);
    charts->setContentsMargins(0, 0, 0, 0);
    charts->setSpacing(6);
    m_throughput = new QCustomPlot(this);
    m_latency = new QCustomPlot(this);
    m_memory = new QCustomPlot(this);
    m_adapters = new QCustomPlot(this);
    m_throughput->setObjectName(QStringLiteral("throughputPlot"));
    m_latency->setObjectName(QStringLiteral("latencyPlot"));
    m_memory->setObjectName(QStringLiteral("memoryPlot"));
    m_adapters->setObjectName(QStringLiteral("adaptersPlot"));
    charts->addWidget(m_throughput, 0, 0);
    charts->addWidget(m_latency, 0, 1);
    charts->addWidget(m_memory, 1, 0);
    charts->addWidget(m_adapters, 1, 1);
    setupPlots();
}

void ServeCharts::setupPlots() {
    for (QCustomPlot* p : {m_throughput, m_latency, m_memory, m_adapters}) {
        p->setMinimumSize(320, 200);
        p->setNotAntialiasedElements(QCP::aeAll);
        p->setAntialiasedElements(QCP::aePlottables);
        styleAxis(p->xAxis, tr("time since start (s)"), -1, -1);
    }
    addTitle(m_throughput, tr("Throughput"));
    styleAxis(m_throughput->yAxis, tr("tokens/s"), -1, -1);
    addLine(m_throughput, tr("output tokens/s"), kBlue, m_throughput->xAxis, m_throughput->yAxis);
    addLine(m_throughput, tr("prompt tokens/s"), kTeal, m_throughput->xAxis, m_throughput->yAxis,
            Qt::DashLine);

    addTitle(m_latency, tr("Latency percentiles"));
    styleAxis(m_latency->yAxis, tr("ms"), -1, -1);
    addLine(m_latency, tr("TTFT p50"), kGreen, m_latency->xAxis, m_latency->yAxis);
    addLine(m_latency, tr("TTFT p99"), kGreen, m_latency->xAxis, m_latency->yAxis, Qt::DashLine);
    addLine(m_latency, tr("e2e p50"), kPurple, m_latency->xAxis, m_latency->yAxis);
    addLine(m_latency, tr("e2e p99"), kPurple, m_latency->xAxis, m_latency->yAxis, Qt::DashLine);

    addTitle(m_memory, tr("Server memory (stacked, MiB)"));
    m_memoryTitle = qobject_cast<QCPTextElement*>(m_memory->plotLayout()->element(0, 0));
    styleAxis(m_memory->yAxis, tr("MiB"), -1, -1);
    QCPGraph* below = nullptr;
    for (int layer = 0; layer < kLayers; ++layer) {
        QCPGraph* g = m_memory->addGraph();
        g->setPen(QPen(kLayerColors[layer].darker(120), 1));
        g->setBrush(layerBrush(layer, false));
        if (below) g->setChannelFillGraph(below);
        below = g;
    }

    addTitle(m_adapters, tr("Adapters"));
    styleAxis(m_adapters->yAxis, tr("active adapters (last 2 s)"), -1, -1);
    styleAxis(m_adapters->yAxis2, tr("cache hit rate %"), -1, -1);
    m_adapters->yAxis2->setRange(0, 105);
    addLine(m_adapters, tr("active adapters"), kBlue, m_adapters->xAxis, m_adapters->yAxis);
    addLine(m_adapters, tr("cache hit rate % (right)"), kRed, m_adapters->xAxis, m_adapters->yAxis2);
    for (QCustomPlot* p : {m_throughput, m_latency, m_memory, m_adapters})
        setupLegend(p); // after the titles: rows are title, legend, axes

    // Requests/s: a strip of its own under the tokens (rows: title, legend, tokens, requests).
    m_requestsRect = new QCPAxisRect(m_throughput);
    m_throughput->plotLayout()->addElement(3, 0, m_requestsRect);
    m_throughput->plotLayout()->setRowStretchFactor(2, 1.0);
    m_throughput->plotLayout()->setRowStretchFactor(3, 0.45);
    m_throughput->plotLayout()->setRowSpacing(0);
    auto* margins = new QCPMarginGroup(m_throughput);
    m_throughput->axisRect()->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
    m_requestsRect->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
    QCPAxis* reqX = m_requestsRect->axis(QCPAxis::atBottom);
    QCPAxis* reqY = m_requestsRect->axis(QCPAxis::atLeft);
    styleAxis(reqX, tr("time since start (s)"), -1, -1);
    styleAxis(reqY, tr("req/s"), -1, -1);
    reqY->ticker()->setTickCount(3);
    m_throughput->xAxis->setLabel(QString());
    m_throughput->xAxis->setTickLabels(false);
    addLine(m_throughput, tr("requests/s (lower strip)"), kOrange, reqX, reqY);
    setCacheShown(false);
}

void ServeCharts::setCacheShown(bool shown) {
    QCPGraph* hit = m_adapters->graph(1);
    m_cacheShown = shown;
    hit->setVisible(shown);
    m_adapters->yAxis2->setVisible(shown);
    if (shown)
        hit->addToLegend();
    else
        hit->removeFromLegend();
    fitLegend(m_adapters);
    m_adapters->replot(QCustomPlot::rpQueuedReplot);
}

QString ServeCharts::memoryTitle() const {
    return m_memoryTitle ? m_memoryTitle->text() : QString();
}

void ServeCharts::setDeviceMemoryShown(bool device, const QString& deviceName, bool gib) {
    const QString unit = gib ? tr("GiB") : tr("MiB");
    if (m_memoryTitle)
        m_memoryTitle->setText(device ? tr("Device memory: %1 (stacked, %2)").arg(deviceName, unit)
                                      : tr("Server memory (stacked, MiB)"));
    m_memory->yAxis->setLabel(device ? unit : tr("MiB"));
    if (device == m_deviceMemory) return;
    m_deviceMemory = device;
    m_memory->graph(kRest)->setBrush(layerBrush(kRest, device));
}

void ServeCharts::resizeEvent(QResizeEvent* event) {
    QWidget::resizeEvent(event);
    fitLegends();
}

void ServeCharts::fitLegends() {
    for (QCustomPlot* p : {m_throughput, m_latency, m_memory, m_adapters}) {
        fitLegend(p);
        p->replot(QCustomPlot::rpQueuedReplot);
    }
}

void ServeCharts::rebuild(const ServeHistory& h) {
    const auto& samples = h.samples();
    const int n = int(samples.size());
    QVector<double> t(n);
    constexpr int kSeries = 7 + kLayers + 2;
    std::vector<QVector<double>> series(kSeries, QVector<double>(n));
    double ownTop = 0; // the highest top of the server's own parts in the window
    for (int i = 0; i < n; ++i) {
        const ServeSample& s = samples[std::size_t(i)];
        ownTop = std::max(ownTop, s.weightsMiB + s.adaptersMiB + s.kvMiB + s.runtimeMiB);
    }
    // On a device (the newest sample says so) the chart is the device's memory, to scale, up to its total.
    const bool device = n > 0 && samples.back().onDevice;
    double deviceTotal = 0;
    for (const ServeSample& s : samples)
        if (s.onDevice) deviceTotal = std::max(deviceTotal, s.devTotalMiB);
    const bool gib = device && deviceTotal > kGibThresholdMiB;
    const double scale = gib ? 1.0 / 1024.0 : 1.0; // MiB -> the axis unit
    const double memUpper = device       ? std::max(deviceTotal * scale, 1e-9) * 1.05
                            : ownTop > 0 ? ownTop * (1.15 + kBandFraction)
                                         : 1.0;
    const double band = kBandFraction * memUpper;
    for (int i = 0; i < n; ++i) {
        const ServeSample& s = samples[std::size_t(i)];
        t[i] = s.t;
        double w = s.weightsMiB, a = w + s.adaptersMiB, k = a + s.kvMiB, r = k + s.runtimeMiB;
        double top = r + (s.otherMiB > 0 ? band : 0.0);
        if (device) { // weights, adapters, KV pools, other used, free: up to the device's total
            w = s.onDevice ? s.devWeightsMiB * scale : kNaN;
            a = w + s.devAdaptersMiB * scale;
            k = a + s.devKvMiB * scale;
            r = k + s.devOtherMiB * scale;
            top = r + s.devFreeMiB * scale;
        }
        const double values[kSeries] = {s.tokensPerS,
                                        s.promptTokensPerS,
                                        s.requestsPerS,
                                        s.ttftP50Ms,
                                        s.ttftP99Ms,
                                        s.e2eP50Ms,
                                        s.e2eP99Ms,
                                        w,
                                        a,
                                        k,
                                        r,
                                        top,
                                        double(s.activeAdapters),
                                        s.hitRate * 100.0};
        for (int j = 0; j < kSeries; ++j)
            series[std::size_t(j)][i] = values[j];
    }
    auto set = [&](QCustomPlot* plot, int graph, int j) {
        plot->graph(graph)->setData(t, series[std::size_t(j)], true);
    };
    for (int g = 0; g < 3; ++g)
        set(m_throughput, g, g);
    for (int g = 0; g < 4; ++g)
        set(m_latency, g, 3 + g);
    for (int g = 0; g < kLayers; ++g)
        set(m_memory, g, 7 + g);
    set(m_adapters, 0, 7 + kLayers);
    set(m_adapters, 1, 8 + kLayers);

    // The stacked layers are hard to read off the axis: their sizes, with units, go in the legend.
    const ServeSample none;
    const ServeSample& s = n ? samples.back() : none;
    setDeviceMemoryShown(device, QString::fromStdString(s.deviceName), gib);
    if (device) {
        m_memory->graph(kWeights)->setName(tr("weights %1").arg(layerSize(s.devWeightsMiB)));
        m_memory->graph(kAdapters)->setName(tr("adapters %1").arg(layerSize(s.devAdaptersMiB)));
        // The device's pools mirror the engine's KV blocks: the host split says how many are in use.
        const double inUse = s.kvReservedMiB > 0 ? 100.0 * s.kvMiB / s.kvReservedMiB : 0.0;
        m_memory->graph(kKv)->setName(
            tr("KV cache %1 (%2% in use)").arg(layerSize(s.devKvMiB), QLocale().toString(inUse, 'f', 0)));
        m_memory->graph(kRuntime)->setName(tr("other used %1").arg(layerSize(s.devOtherMiB)));
        m_memory->graph(kRest)->setName(
            tr("free %1 of %2").arg(layerSize(s.devFreeMiB), layerSize(s.devTotalMiB)));
    } else {
        m_memory->graph(kWeights)->setName(tr("weights %1").arg(layerSize(s.weightsMiB)));
        m_memory->graph(kAdapters)->setName(tr("adapters %1").arg(layerSize(s.adaptersMiB)));
        m_memory->graph(kKv)->setName(
            tr("KV in use %1 of %2").arg(layerSize(s.kvMiB), layerSize(s.kvReservedMiB)));
        m_memory->graph(kRuntime)->setName(tr("runtime %1").arg(layerSize(s.runtimeMiB)));
        m_memory->graph(kRest)->setName(tr("rest of process %1 (not to scale)").arg(layerSize(s.otherMiB)));
    }

    const double last = n ? t.back() : 0;
    const double first = std::max(0.0, last - h.windowSeconds());
    const double right = std::max(first + kMinSpanSeconds, last);
    auto upper = [](QCustomPlot* p, QCPAxis* valueAxis) {
        bool found = false;
        QCPRange r;
        for (int g = 0; g < p->graphCount(); ++g) {
            if (p->graph(g)->valueAxis() != valueAxis || !p->graph(g)->visible()) continue;
            bool f = false;
            const QCPRange gr = p->graph(g)->getValueRange(f, QCP::sdBoth);
            if (f) r = found ? QCPRange(std::min(r.lower, gr.lower), std::max(r.upper, gr.upper)) : gr;
            found = found || f;
        }
        return found && r.upper > 0 ? r.upper * 1.15 : 1.0;
    };
    for (QCustomPlot* p : {m_throughput, m_latency, m_memory, m_adapters})
        p->xAxis->setRange(first, right);
    m_requestsRect->axis(QCPAxis::atBottom)->setRange(first, right);
    m_throughput->yAxis->setRange(0, upper(m_throughput, m_throughput->yAxis));
    m_requestsRect->axis(QCPAxis::atLeft)
        ->setRange(0, upper(m_throughput, m_requestsRect->axis(QCPAxis::atLeft)));
    m_latency->yAxis->setRange(0, upper(m_latency, m_latency->yAxis));
    m_memory->yAxis->setRange(0, memUpper);
    m_adapters->yAxis->setRange(0, upper(m_adapters, m_adapters->yAxis));
    fitLegends();
}

} // namespace lorafleet::ui
