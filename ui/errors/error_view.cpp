// ErrorView (see error_view.hpp).
#include "ui/errors/error_view.hpp"

#include "engine/analysis/bank_options.hpp"
#include "engine/analysis/bank_rank_sweep.hpp"
#include "engine/analysis/error_stats.hpp"
#include "engine/backend/compress_backends.hpp"
#include "engine/io/fleet.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/engine_job.hpp"
#include "ui/common/plot_style.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/workspace/session.hpp"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QStackedWidget>
#include <QToolTip>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

namespace lorafleet::ui {

namespace {

constexpr std::uint64_t kSweepSeed = 0x5eedu;

// Viridis (perceptually uniform, readable in grey and by colour-blind readers), 5 stops.
QCPColorGradient viridis() {
    QCPColorGradient g;
    g.clearColorStops();
    g.setColorStopAt(0.00, QColor(0x44, 0x01, 0x54));
    g.setColorStopAt(0.25, QColor(0x3b, 0x52, 0x8b));
    g.setColorStopAt(0.50, QColor(0x21, 0x91, 0x8c));
    g.setColorStopAt(0.75, QColor(0x5e, 0xc9, 0x62));
    g.setColorStopAt(1.00, QColor(0xfd, 0xe7, 0x25));
    g.setNanHandling(QCPColorGradient::nhNanColor);
    g.setNanColor(QColor(235, 235, 235));
    return g;
}

// Moves the plot's legend under its axis rect (rows: title, axis rect, legend), laid out in a row, so it
// never hides data.
void legendBelow(QCustomPlot* plot) {
    plot->legend->setVisible(true);
    plot->legend->setFont(plotFont(-1));
    plot->legend->setBorderPen(Qt::NoPen);
    plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    plot->legend->setWrap(3);
    plot->axisRect()->insetLayout()->take(plot->legend);
    plot->plotLayout()->addElement(plot->plotLayout()->rowCount(), 0, plot->legend);
    plot->plotLayout()->setRowStretchFactor(plot->plotLayout()->rowCount() - 1, 0.001);
    plot->plotLayout()->setRowSpacing(0);
}

QString moduleLabel(const std::string& shortName) {
    QString s = QString::fromStdString(shortName);
    if (s.endsWith(QLatin1String("_proj"))) s.chop(5);
    return s;
}

const QColor kBarColor(0x4e, 0x79, 0xa7);
const QColor kTargetColor(0xd6, 0x27, 0x28);
const QColor kMeanColor(0x2c, 0x2c, 0x2c);
const QColor kSweepColor(0x59, 0xa1, 0x4f);

} // namespace

// The worker's result: written once by the sweep job before its thread ends, read after finished().
struct SweepOutput {
    analysis::bank_sweep_result result;
};

ErrorView::ErrorView(Session* session, QWidget* parent) : QWidget(parent), m_session(session) {
    m_stack = new QStackedWidget(this);
    m_empty =
        new QLabel(tr("Compress the fleet to see its compression errors: the distribution over adapters, "
                      "a layer x module heat map and an error-vs-rank sweep."),
                   this);
    m_empty->setAlignment(Qt::AlignCenter);
    m_empty->setWordWrap(true);

    auto* page = new QWidget(this);
    auto* grid = new QGridLayout(page);
    m_histogram = new QCustomPlot(page);
    m_heat = new QCustomPlot(page);
    m_sweepPlot = new QCustomPlot(page);
    for (QCustomPlot* p : {m_histogram, m_heat, m_sweepPlot})
        p->setMinimumSize(300, 220);

    auto* sweepBox = new QWidget(page);
    auto* sweepLayout = new QVBoxLayout(sweepBox);
    sweepLayout->setContentsMargins(0, 0, 0, 0);
    auto* controls = new QHBoxLayout;
    m_sweepModules = new QSpinBox(sweepBox);
    m_sweepModules->setRange(1, 64);
    m_sweepModules->setValue(6);
    m_sweepModules->setToolTip(tr("Modules sampled (seeded) from the fleet for the quick sweep"));
    m_runSweep = new QPushButton(tr("Run rank sweep"), sweepBox);
    m_runSweep->setToolTip(
        tr("Compress a sample of modules at ranks 1, 2, 4, ... with the bank's method, "
           "settings and clusters (each adapter stays in its cluster), in the background"));
    m_cancelSweep = new QPushButton(tr("Cancel"), sweepBox);
    m_cancelSweep->setEnabled(false);
    m_sweepProgress = new QProgressBar(sweepBox);
    m_sweepProgress->setRange(0, 1000);
    m_sweepProgress->setTextVisible(true);
    m_sweepProgress->setVisible(false);
    controls->addWidget(new QLabel(tr("Sample modules:"), sweepBox));
    controls->addWidget(m_sweepModules);
    controls->addWidget(m_runSweep);
    controls->addWidget(m_cancelSweep);
    controls->addWidget(m_sweepProgress, 1);
    m_sweepStatus = new QLabel(sweepBox);
    m_sweepStatus->setWordWrap(true);
    controls->addWidget(m_sweepStatus, 2);
    sweepLayout->addLayout(controls);
    sweepLayout->addWidget(m_sweepPlot, 1);

    grid->addWidget(m_histogram, 0, 0);
    grid->addWidget(m_heat, 0, 1);
    grid->addWidget(sweepBox, 1, 0, 1, 2);
    grid->setRowStretch(0, 3);
    grid->setRowStretch(1, 2);
    m_stack->addWidget(m_empty);
    m_stack->addWidget(page);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_stack);

    styleAxis(m_histogram->xAxis, tr("Mean relative squared error per adapter"));
    styleAxis(m_histogram->yAxis, tr("Adapters"));
    addTitle(m_histogram, tr("Error distribution"));
    legendBelow(m_histogram);
    auto counts = QSharedPointer<QCPAxisTickerFixed>::create(); // adapter counts: whole numbers only
    counts->setTickStep(1.0);
    counts->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    m_histogram->yAxis->setTicker(counts);

    styleAxis(m_heat->xAxis, tr("Module"));
    styleAxis(m_heat->yAxis, tr("Layer"));
    m_heat->xAxis->grid()->setVisible(false);
    m_heat->yAxis->grid()->setVisible(false);
    addTitle(m_heat, tr("Mean error by layer and module"));
    m_heat->setMouseTracking(true);
    connect(m_heat, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
        const QString text = heatMapToolTip(e->pos());
        if (text.isEmpty())
            QToolTip::hideText();
        else
            QToolTip::showText(m_heat->mapToGlobal(e->pos()), text, m_heat);
    });

    styleAxis(m_sweepPlot->xAxis, tr("Rank (log scale)"));
    styleAxis(m_sweepPlot->yAxis, tr("Mean relative squared error"));
    addTitle(m_sweepPlot, tr("Error vs rank (module sample)"));
    legendBelow(m_sweepPlot);

    connect(m_runSweep, &QPushButton::clicked, this, &ErrorView::startRankSweep);
    connect(m_cancelSweep, &QPushButton::clicked, this, &ErrorView::cancelRankSweep);
    setBank(nullptr);
}

ErrorView::~ErrorView() = default; // m_job is a child: destroying it cancels and joins its worker

bool ErrorView::showsEmptyState() const {
    return m_stack->currentWidget() == m_empty;
}
QString ErrorView::sweepStatus() const {
    return m_sweepStatus->text();
}
void ErrorView::setSweepStatus(const QString& text) {
    m_sweepStatus->setText(text);
}
bool ErrorView::isSweepRunning() const {
    return m_job && m_job->isRunning();
}

void ErrorView::setBank(std::shared_ptr<const lorafleet::bank::compressed_bank> bank) {
    if (m_job) {
        m_job->disconnect(this);
        m_job->cancel();
        m_job->deleteLater();
        m_job = nullptr;
    }
    m_sweepProgress->setVisible(false);
    m_cancelSweep->setEnabled(false);
    m_bank = std::move(bank);
    m_sweep.clear();
    m_sweepBankOnSample = std::numeric_limits<double>::quiet_NaN();
    m_sweepModuleCount = 0;
    // The target line is the bank's own goal: only an automatic cluster count had one.
    m_target = std::numeric_limits<double>::quiet_NaN();
    m_settingsNote.clear();
    if (m_bank) {
        try {
            const auto settings = analysis::bank_compression_settings(*m_bank);
            if (settings.automatic_clusters) m_target = settings.options.target_error;
        } catch (const std::exception& e) {
            m_settingsNote =
                tr("The bank's recorded settings are unreadable (%1).").arg(QString::fromUtf8(e.what()));
        }
    }
    m_runSweep->setEnabled(bool(m_bank));
    setSweepStatus(!m_bank                     ? QString()
                   : !m_settingsNote.isEmpty() ? m_settingsNote
                                               : tr("Run a sweep to see how the error falls with the rank."));
    m_stack->setCurrentWidget(m_bank && !m_bank->adapters.empty() ? m_stack->widget(1) : m_empty);
    rebuildHistogram();
    rebuildHeatMap();
    rebuildSweepPlot();
}

bool ErrorView::hasTarget() const {
    return std::isfinite(m_target);
}

void ErrorView::rebuildHistogram() {
    m_histogram->clearPlottables();
    m_histogram->clearItems();
    if (!m_bank || m_bank->adapters.empty()) {
        m_histogram->replot();
        return;
    }
    const auto errors = analysis::adapter_mean_errors(*m_bank);
    double sum = 0;
    int counted = 0;
    for (double e : errors)
        if (std::isfinite(e)) {
            sum += e;
            ++counted;
        }
    const double mean = counted ? sum / counted : 0.0;
    // Bins over the data's own range: the bars resolve the errors, a far target does not squash them.
    const auto range = analysis::histogram_range(errors);
    const auto h =
        analysis::error_histogram(errors, analysis::default_bin_count(errors.size()), range.lo, range.hi);

    auto* bars = new QCPBars(m_histogram->xAxis, m_histogram->yAxis);
    bars->setWidth(h.width);
    bars->setPen(QPen(kBarColor.darker(140)));
    QColor fill = kBarColor;
    fill.setAlpha(210);
    bars->setBrush(fill);
    int tallest = 0;
    for (std::size_t b = 0; b < h.counts.size(); ++b) {
        bars->addData(h.center(b), h.counts[b]);
        tallest = std::max(tallest, h.counts[b]);
    }
    bars->setName(tr("Adapters (n = %1)").arg(counted));

    const double pad = 0.04 * (range.hi - range.lo);
    const QCPRange xRange(range.lo >= 0 ? std::max(0.0, range.lo - pad) : range.lo - pad, range.hi + pad);
    // Vertical lines: an item has no legend entry, so each gets an empty graph with the same pen.
    const auto addVLine = [this](double x, const QPen& pen, const QString& name) {
        auto* line = new QCPItemStraightLine(m_histogram);
        line->point1->setCoords(x, 0);
        line->point2->setCoords(x, 1);
        line->setPen(pen);
        auto* entry = m_histogram->addGraph();
        entry->setPen(pen);
        entry->setName(name);
    };
    if (hasTarget()) {
        const int above = int(std::count_if(errors.begin(), errors.end(),
                                            [this](double e) { return std::isfinite(e) && e > m_target; }));
        QString name = tr("Target error %1").arg(formatError(m_target));
        if (m_target > xRange.upper)
            name += tr(" (off the axis, right: every adapter is below)");
        else if (m_target < xRange.lower)
            name += tr(" (off the axis, left: every adapter is above)");
        addVLine(m_target, QPen(kTargetColor, 2.0, Qt::DashLine), name);
        if (above > 0) bars->setName(tr("Adapters (n = %1, %2 above target)").arg(counted).arg(above));
    }
    addVLine(mean, QPen(kMeanColor, 1.5, Qt::DotLine), tr("Mean %1").arg(formatError(mean)));
    if (!hasTarget() && m_settingsNote.isEmpty())
        m_histogram->xAxis->setLabel(tr("Mean relative squared error per adapter (%1, fixed: no target)")
                                         .arg(plural(m_bank->clusters, tr("cluster"), tr("clusters"))));
    else
        m_histogram->xAxis->setLabel(tr("Mean relative squared error per adapter"));

    m_histogram->xAxis->setRange(xRange);
    m_histogram->yAxis->setRange(0, std::max(1.0, tallest * 1.15));
    m_histogram->replot();
}

void ErrorView::rebuildHeatMap() {
    m_heat->clearPlottables();
    m_heat->clearItems();
    m_cells.reset();
    // The colour scale lives in the plot layout (column 1 of the axis-rect row): drop an old one.
    for (int i = m_heat->plotLayout()->elementCount() - 1; i >= 0; --i)
        if (auto* scale = qobject_cast<QCPColorScale*>(m_heat->plotLayout()->elementAt(i)))
            m_heat->plotLayout()->remove(scale);
    m_heat->plotLayout()->simplify();
    if (!m_bank || m_bank->adapters.empty()) {
        m_heat->replot();
        return;
    }
    auto cells = std::make_shared<analysis::layer_module_grid>(analysis::layer_module_errors(*m_bank));
    m_cells = cells;
    const analysis::layer_module_grid& stats = *cells;
    const int cols = int(stats.modules.size());
    const int rows = int(stats.layers.size());
    if (cols == 0 || rows == 0) {
        m_heat->replot();
        return;
    }
    auto* map = new QCPColorMap(m_heat->xAxis, m_heat->yAxis);
    map->data()->setSize(cols, rows);
    map->data()->setRange(QCPRange(0, cols - 1), QCPRange(0, rows - 1)); // cell centres at integers
    double maxCell = 0, minCell = std::numeric_limits<double>::infinity();
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
            const double v = stats.at(std::size_t(r), std::size_t(c));
            map->data()->setCell(c, r, v);
            if (std::isfinite(v)) {
                maxCell = std::max(maxCell, v);
                minCell = std::min(minCell, v);
            }
        }
    // The colour scale spans the cells' own range so near-equal cells still differ in colour; an exact
    // fit (errors ~1e-13) keeps a floor on the top so it reads as "zero", not as a full scale.
    double bottom = 0, top = std::max(maxCell, 1e-3);
    if (maxCell >= 1e-6 && std::isfinite(minCell)) {
        const auto range = analysis::histogram_range({minCell, maxCell});
        bottom = range.lo;
        top = range.hi;
    }
    map->setInterpolate(false);
    map->setName(tr("Mean error"));

    auto* scale = new QCPColorScale(m_heat);
    m_heat->plotLayout()->addElement(1, 1, scale);
    scale->setType(QCPAxis::atRight);
    scale->axis()->setLabel(tr("Mean relative squared error"));
    scale->axis()->setLabelFont(plotFont());
    scale->axis()->setTickLabelFont(plotFont(-1));
    scale->setBarWidth(12);
    map->setColorScale(scale); // the map takes the scale's gradient and range: set them on the scale
    scale->setGradient(viridis());
    scale->setDataRange(QCPRange(bottom, top));
    // Values in the cells while they are few enough to read.
    if (rows * cols <= 64) {
        for (int r = 0; r < rows; ++r)
            for (int c = 0; c < cols; ++c) {
                const double v = stats.at(std::size_t(r), std::size_t(c));
                auto* label = new QCPItemText(m_heat);
                label->position->setCoords(c, r);
                label->setText(std::isfinite(v) ? formatError(v) : tr("absent"));
                label->setFont(plotFont(-1));
                label->setColor(!std::isfinite(v) || v > bottom + 0.6 * (top - bottom) ? Qt::black
                                                                                       : Qt::white);
                label->setClipToAxisRect(true);
            }
    }
    auto* group = new QCPMarginGroup(m_heat);
    m_heat->axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, group);
    scale->setMarginGroup(QCP::msBottom | QCP::msTop, group);

    auto xTicker = QSharedPointer<QCPAxisTickerText>::create();
    for (int c = 0; c < cols; ++c)
        xTicker->addTick(c, moduleLabel(stats.modules[std::size_t(c)]));
    m_heat->xAxis->setTicker(xTicker);
    auto yTicker = QSharedPointer<QCPAxisTickerText>::create();
    const int step = std::max(1, int(std::ceil(rows / 12.0)));
    for (int r = 0; r < rows; r += step)
        yTicker->addTick(r, stats.layers[std::size_t(r)] < 0 ? tr("other")
                                                             : QString::number(stats.layers[std::size_t(r)]));
    m_heat->yAxis->setTicker(yTicker);
    m_heat->xAxis->setRange(-0.5, cols - 0.5);
    m_heat->yAxis->setRange(-0.5, rows - 0.5);
    m_heat->replot();
}

QString ErrorView::heatMapToolTip(const QPoint& pos) const {
    if (!m_cells || m_cells->modules.empty()) return {};
    const int col = int(std::lround(m_heat->xAxis->pixelToCoord(pos.x())));
    const int row = int(std::lround(m_heat->yAxis->pixelToCoord(pos.y())));
    if (!m_heat->axisRect()->rect().contains(pos) || col < 0 || row < 0 ||
        col >= int(m_cells->modules.size()) || row >= int(m_cells->layers.size()))
        return {};
    const std::size_t cell = std::size_t(row) * m_cells->modules.size() + std::size_t(col);
    const int layer = m_cells->layers[std::size_t(row)];
    const QString where = tr("layer %1 · %2")
                              .arg(layer < 0 ? tr("other") : QString::number(layer))
                              .arg(QString::fromStdString(m_cells->modules[std::size_t(col)]));
    if (m_cells->count[cell] == 0) return tr("%1: no adapter has this module").arg(where);
    return tr("%1: mean error %2 over %3 adapters")
        .arg(where)
        .arg(formatError(m_cells->mean[cell]))
        .arg(m_cells->count[cell]);
}

void ErrorView::rebuildSweepPlot() {
    m_sweepPlot->clearPlottables();
    m_sweepPlot->clearItems();
    if (!m_bank) {
        m_sweepPlot->replot();
        return;
    }
    const double bankError = m_bank->mean_error();
    double top = hasTarget() ? std::max(bankError, m_target) : bankError;
    double maxRank = std::max(2, m_bank->rank * 2);
    if (!m_sweep.empty()) {
        QVector<double> xs, ys;
        for (const auto& [rank, error] : m_sweep) {
            xs << rank;
            ys << error;
            top = std::max(top, error);
            maxRank = std::max(maxRank, double(rank));
        }
        auto* curve = m_sweepPlot->addGraph();
        curve->setData(xs, ys, true);
        curve->setPen(QPen(kSweepColor, 2.0));
        curve->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, kSweepColor, 7));
        curve->setName(tr("Sweep: %1 sampled modules, the bank's %2 kept")
                           .arg(m_sweepModuleCount)
                           .arg(plural(m_bank->clusters, tr("cluster"), tr("clusters"))));
    }
    // The bank's own point: on the sweep's module sample once there is one (the number the sweep's point
    // at the bank's rank reproduces), else over all modules.
    const bool onSample = !m_sweep.empty() && std::isfinite(m_sweepBankOnSample);
    const double bankY = onSample ? m_sweepBankOnSample : bankError;
    top = std::max(top, bankY);
    auto* current = m_sweepPlot->addGraph();
    current->addData(m_bank->rank, bankY);
    current->setLineStyle(QCPGraph::lsNone);
    current->setScatterStyle(
        QCPScatterStyle(QCPScatterStyle::ssDiamond, QPen(kTargetColor, 2), QBrush(Qt::white), 11));
    current->setName(
        onSample ? tr("This bank (rank %1) on the same modules: %2; all modules: %3")
                       .arg(m_bank->rank)
                       .arg(formatError(bankY), formatError(bankError))
                 : tr("This bank: rank %1, all modules: %2").arg(m_bank->rank).arg(formatError(bankError)));

    auto* rankLine = new QCPItemStraightLine(m_sweepPlot);
    rankLine->point1->setCoords(m_bank->rank, 0);
    rankLine->point2->setCoords(m_bank->rank, 1);
    rankLine->setPen(QPen(QColor(120, 120, 120), 1.0, Qt::DashLine));
    if (hasTarget()) {
        auto* targetLine = new QCPItemStraightLine(m_sweepPlot);
        targetLine->point1->setCoords(1, m_target);
        targetLine->point2->setCoords(2, m_target);
        targetLine->setPen(QPen(kTargetColor, 1.5, Qt::DashLine));
        auto* targetEntry = m_sweepPlot->addGraph();
        targetEntry->setPen(targetLine->pen());
        targetEntry->setName(tr("Target error %1").arg(formatError(m_target)));
    }

    m_sweepPlot->xAxis->setScaleType(QCPAxis::stLogarithmic);
    auto ticker = QSharedPointer<QCPAxisTickerLog>::create();
    ticker->setLogBase(2);
    ticker->setSubTickCount(0);
    m_sweepPlot->xAxis->setTicker(ticker);
    m_sweepPlot->xAxis->setNumberFormat(QStringLiteral("f"));
    m_sweepPlot->xAxis->setNumberPrecision(0);
    m_sweepPlot->xAxis->setRange(0.8, maxRank * 1.25);
    // A little room below 0 so markers at error 0 (exact fits) are not cut by the axis.
    m_sweepPlot->yAxis->setRange(-0.03 * std::max(top, 1e-3), std::max(top, 1e-3) * 1.1);
    m_sweepPlot->replot();
}

void ErrorView::startRankSweep() {
    if (!m_bank || isSweepRunning()) return;
    io::fleet fleet;
    std::unordered_set<std::string> inBank;
    for (const auto& a : m_bank->adapters)
        inBank.insert(a.name);
    for (const auto& a : m_session->store()->adapters())
        if (inBank.count(a->name)) fleet.push_back(a);
    if (fleet.empty()) {
        setSweepStatus(tr("None of the bank's adapters is in the fleet: import them to run a sweep."));
        return;
    }
    analysis::bank_sweep_options options;
    options.sample_modules = std::size_t(m_sweepModules->value());
    options.seed = kSweepSeed;
    auto output = std::make_shared<SweepOutput>();
    auto bank = m_bank;

    auto work = [bank, fleet, options, output](JobContext& ctx) {
        auto backend = backend::make_compress_backend("auto", 0);
        ctx.setStage(QStringLiteral("Rank sweep"));
        output->result = analysis::sweep_bank_ranks(
            *bank, fleet, *backend, options, [&ctx](const compress::progress_info& p) {
                ctx.setProgress(qint64(std::lround(p.fraction * 1000)), 1000);
                ctx.setStage(QStringLiteral("Rank sweep: %1").arg(QString::fromStdString(p.stage)));
                return !ctx.isCancelled();
            });
    };
    m_job = m_session->host()->start(tr("Rank sweep"), work, this);
    m_runSweep->setEnabled(false);
    m_cancelSweep->setEnabled(true);
    m_sweepProgress->setValue(0);
    m_sweepProgress->setVisible(true);
    setSweepStatus(tr("Sweeping %1 adapters on %2 sampled modules, each in its bank cluster...")
                       .arg(fleet.size())
                       .arg(options.sample_modules));
    EngineJob* job = m_job;
    connect(job, &EngineJob::progress, this, [this](qint64 done, qint64 total, const QString& stage) {
        if (total > 0) m_sweepProgress->setValue(int(std::clamp<qint64>(done * 1000 / total, 0, 1000)));
        m_sweepProgress->setFormat(stage + QStringLiteral("  %p%"));
    });
    connect(job, &EngineJob::finished, this,
            [this, job, output](EngineJob::Outcome outcome, const QString& message) {
                const bool ok = outcome == EngineJob::Outcome::Succeeded;
                if (ok) {
                    m_sweep.clear();
                    for (const auto& p : output->result.points)
                        m_sweep.emplace_back(int(p.rank), p.mean_error);
                    m_sweepModuleCount = int(output->result.modules.size());
                    m_sweepBankOnSample = output->result.bank_error_on_sample;
                    setSweepStatus(tr("Swept ranks %1 to %2 in %3 s; the bank's own error on these modules "
                                      "is %4.")
                                       .arg(m_sweep.empty() ? 0 : m_sweep.front().first)
                                       .arg(m_sweep.empty() ? 0 : m_sweep.back().first)
                                       .arg(job->elapsedMs() / 1000.0, 0, 'f', 1)
                                       .arg(formatError(m_sweepBankOnSample)));
                } else if (outcome == EngineJob::Outcome::Cancelled) {
                    setSweepStatus(tr("Sweep cancelled."));
                } else {
                    setSweepStatus(tr("Sweep failed: %1").arg(message));
                }
                m_sweepProgress->setVisible(false);
                m_cancelSweep->setEnabled(false);
                m_runSweep->setEnabled(bool(m_bank));
                job->deleteLater();
                m_job = nullptr;
                rebuildSweepPlot();
                emit sweepFinished(ok);
            });
}

void ErrorView::cancelRankSweep() {
    if (m_job) m_job->cancel();
}

} // namespace lorafleet::ui
