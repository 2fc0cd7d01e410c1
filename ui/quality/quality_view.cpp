// The Quality tab: see quality_view.hpp.
#include "ui/quality/quality_view.hpp"

#include "ui/clusters/cluster_view.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/engine_job.hpp"
#include "ui/common/plot_style.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/quality/quality_work.hpp"
#include "ui/serve/serve_resources.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMouseEvent>
#include <QPushButton>
#include <QSpinBox>
#include <QSplitter>
#include <QStackedWidget>
#include <QTableWidget>
#include <QToolTip>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace lorafleet::ui {

namespace {

const QString kEvaluateTip = QStringLiteral("Run the workspace's raw adapters and their compressed forms on "
                                            "the first prompts of the bundled sonnets and store the "
                                            "agreement in the bank");

QString percent(double v) {
    return QStringLiteral("%1%").arg(100.0 * v, 0, 'f', 1);
}

// A number cell that sorts and reads as itself.
QTableWidgetItem* cell(const QString& text, Qt::Alignment align = Qt::AlignRight | Qt::AlignVCenter) {
    auto* item = new QTableWidgetItem(text);
    item->setFlags(Qt::ItemIsSelectable | Qt::ItemIsEnabled);
    item->setTextAlignment(align);
    return item;
}

} // namespace

QualityView::QualityView(Session* session, QWidget* parent)
    : QWidget(parent), m_session(session), m_modelDir([] { return demoModelDir(); }),
      m_promptsFile(sonnetsPath()) {
    m_stack = new QStackedWidget(this);
    m_empty = new QLabel(tr("No compressed bank yet: compress the fleet (Compress tab) or open a workspace "
                            "with a bank, then evaluate how closely each compressed adapter reproduces its "
                            "raw original here."),
                         this);
    m_empty->setWordWrap(true);
    m_empty->setAlignment(Qt::AlignCenter);

    auto* page = new QWidget(this);
    m_metric = new QComboBox(page);
    m_metric->addItem(tr("Token agreement"));
    m_metric->addItem(tr("Exact match"));
    m_metric->setToolTip(tr("Token agreement: share of the raw adapter's greedy tokens the compressed "
                            "adapter also picks. Exact match: share of prompts whose whole greedy output "
                            "is identical."));
    m_prompts = new QSpinBox(page);
    m_prompts->setRange(1, 4096);
    m_prompts->setValue(8);
    m_prompts->setPrefix(tr("prompts "));
    m_maxTokens = new QSpinBox(page);
    m_maxTokens->setRange(1, 4096);
    m_maxTokens->setValue(16);
    m_maxTokens->setPrefix(tr("tokens "));
    m_evaluate = new QPushButton(tr("Evaluate"), page);
    m_evaluate->setToolTip(kEvaluateTip);
    m_cancel = new QPushButton(tr("Cancel"), page);
    m_status = new QLabel(page);
    m_status->setWordWrap(true);
    auto* bar = new QHBoxLayout;
    bar->addWidget(new QLabel(tr("Agreement:"), page));
    bar->addWidget(m_metric);
    bar->addSpacing(12);
    bar->addWidget(m_prompts);
    bar->addWidget(m_maxTokens);
    bar->addWidget(m_evaluate);
    bar->addWidget(m_cancel);
    bar->addWidget(m_status, 1);

    m_caption = new QLabel(page);
    m_caption->setWordWrap(true);

    m_plot = new QCustomPlot(page);
    m_plot->setMinimumSize(320, 240);
    m_plot->setInteractions(QCP::iSelectPlottables | QCP::iMultiSelect);
    m_plot->setMultiSelectModifier(Qt::ControlModifier);
    m_plot->setSelectionRectMode(QCP::srmSelect);
    styleAxis(m_plot->xAxis, tr("Reconstruction error (mean over modules)"));
    styleAxis(m_plot->yAxis, tr("Token agreement"));
    m_plot->legend->setVisible(true);
    m_plot->legend->setFont(plotFont(-1));
    m_plot->legend->setBorderPen(Qt::NoPen);
    m_plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    m_plot->legend->setWrap(8);
    m_plot->axisRect()->insetLayout()->take(m_plot->legend);
    m_plot->plotLayout()->addElement(1, 0, m_plot->legend);
    m_plot->plotLayout()->setRowStretchFactor(1, 0.001);

    m_table = new QTableWidget(0, ColumnCount, page);
    m_table->setHorizontalHeaderLabels({tr("Adapter"), tr("Cluster"), tr("Agreement"), tr("Exact"),
                                        tr("Error"), tr("KL"), tr("First div."), tr("Serve raw")});
    m_table->horizontalHeaderItem(KlColumn)->setToolTip(tr("Mean KL(raw || compressed) per token, nats"));
    m_table->horizontalHeaderItem(FirstDivergenceColumn)
        ->setToolTip(tr("Earliest generated position where the compressed adapter picks another token "
                        "(— when never)"));
    m_table->horizontalHeaderItem(ServeRawColumn)
        ->setToolTip(tr("Serve this adapter from its original PEFT weights (hybrid serving): stored in the "
                        "bank, used by the Serve tab"));
    m_table->verticalHeader()->setVisible(false);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::ExtendedSelection);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->horizontalHeader()->setSectionResizeMode(NameColumn, QHeaderView::Stretch);
    for (int c = 1; c < ColumnCount; ++c)
        m_table->horizontalHeader()->setSectionResizeMode(c, QHeaderView::ResizeToContents);
    m_try = new QPushButton(tr("Try in Playground"), page);
    m_try->setToolTip(
        tr("Open the current adapter in the Playground: raw, compressed and base side by side"));
    auto* tableBox = new QWidget(page);
    auto* tableLayout = new QVBoxLayout(tableBox);
    tableLayout->setContentsMargins(0, 0, 0, 0);
    tableLayout->addWidget(new QLabel(tr("Worst adapters (lowest agreement first)"), tableBox));
    tableLayout->addWidget(m_table, 1);
    auto* tryRow = new QHBoxLayout;
    tryRow->addStretch(1);
    tryRow->addWidget(m_try);
    tableLayout->addLayout(tryRow);

    auto* split = new QSplitter(Qt::Horizontal, page);
    split->addWidget(m_plot);
    split->addWidget(tableBox);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    auto* pageLayout = new QVBoxLayout(page);
    pageLayout->addLayout(bar);
    pageLayout->addWidget(m_caption);
    pageLayout->addWidget(split, 1);
    m_stack->addWidget(m_empty);
    m_stack->addWidget(page);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_stack);

    connect(m_metric, &QComboBox::currentIndexChanged, this, [this] {
        const QStringList keep = selectedAdapters();
        m_plot->yAxis->setLabel(m_metric->currentText());
        rebuildPlot();
        rebuildTable();
        applySelection(keep);
    });
    connect(m_evaluate, &QPushButton::clicked, this, [this] { evaluate(); });
    connect(m_cancel, &QPushButton::clicked, this, &QualityView::cancel);
    connect(m_try, &QPushButton::clicked, this, &QualityView::onTry);
    connect(m_plot, &QCustomPlot::selectionChangedByUser, this, &QualityView::onPlotSelectionChangedByUser);
    m_plot->setMouseTracking(true);
    connect(m_plot, &QCustomPlot::mouseMove, this, [this](QMouseEvent* e) {
        const QString name = adapterAt(e->pos());
        if (name.isEmpty())
            QToolTip::hideText();
        else
            QToolTip::showText(m_plot->mapToGlobal(e->pos()), toolTipFor(name), m_plot);
    });
    connect(m_table, &QTableWidget::itemSelectionChanged, this, &QualityView::onTableSelectionChanged);
    connect(m_table, &QTableWidget::cellChanged, this, &QualityView::onTableItemChanged);
    connect(m_table, &QTableWidget::currentCellChanged, this, [this] { updateButtons(); });
    if (m_session) connect(m_session, &Session::bankChanged, this, &QualityView::refresh);
    refresh();
}

QualityView::~QualityView() = default;

void QualityView::setEvaluationSize(int prompts, int maxTokens) {
    m_prompts->setValue(prompts);
    m_maxTokens->setValue(maxTokens);
}

QualityView::Metric QualityView::metric() const {
    return Metric(m_metric->currentIndex());
}
void QualityView::setMetric(Metric metric) {
    m_metric->setCurrentIndex(int(metric));
}

double QualityView::metricOf(const bank::adapter_quality& q) const {
    return metric() == Metric::ExactMatch ? q.exact_match() : q.token_agreement();
}

bool QualityView::hasEvaluation() const {
    return m_bank && m_bank->quality && !m_bank->quality->adapters.empty();
}
bool QualityView::isBusy() const {
    return m_job && m_job->isRunning();
}
QString QualityView::statusText() const {
    return m_status->text();
}
void QualityView::setStatus(const QString& text) {
    m_status->setText(text);
}

QString QualityView::bankDir() const {
    if (!m_session || !m_session->bank() || m_session->isBankUnsaved()) return {};
    return m_session->workspace()->data().bankPath;
}

QStringList QualityView::rawAdapters() const {
    QStringList out;
    if (m_bank)
        for (const auto& n : m_bank->raw_adapters)
            out << QString::fromStdString(n);
    return out;
}

void QualityView::refresh() {
    m_bank = m_session ? m_session->bank() : nullptr;
    m_stack->setCurrentIndex(m_bank ? 1 : 0);
    if (m_bank) {
        const int all = int(m_bank->adapters.size());
        if (hasEvaluation()) {
            const auto& q = *m_bank->quality;
            m_caption->setText(
                tr("%1 of %2 adapters evaluated on %3 x %4 greedy tokens (model %5). %6 served "
                   "raw.")
                    .arg(q.adapters.size())
                    .arg(all)
                    .arg(q.prompts)
                    .arg(q.max_tokens)
                    .arg(QString::fromStdString(q.model))
                    .arg(m_bank->raw_adapters.size()));
        } else {
            m_caption->setText(tr("The bank has no quality results yet: Evaluate runs each adapter raw and "
                                  "compressed on a few prompts and stores the agreement in the bank."));
        }
    }
    m_evaluate->setText(hasEvaluation() ? tr("Re-evaluate") : tr("Evaluate"));
    rebuildPlot();
    rebuildTable();
    updateButtons();
}

void QualityView::rebuildPlot() {
    m_plot->clearGraphs();
    m_graphNames.clear();
    if (!hasEvaluation()) {
        m_plot->replot();
        return;
    }
    std::map<int, std::vector<PlotPoint>> byCluster;
    for (const auto& a : m_bank->adapters) {
        const auto it = m_bank->quality->adapters.find(a.name);
        if (it == m_bank->quality->adapters.end()) continue;
        byCluster[a.cluster].push_back(
            {QString::fromStdString(a.name), a.cluster, a.mean_error(), metricOf(it->second)});
    }
    double maxError = 0;
    for (auto& [c, points] : byCluster) {
        // QCPGraph keeps its data sorted by key: sort the same way so data index j is points[j].
        std::stable_sort(points.begin(), points.end(),
                         [](const PlotPoint& a, const PlotPoint& b) { return a.error < b.error; });
        QVector<double> xs, ys;
        std::vector<QString> names;
        for (const auto& p : points) {
            xs << p.error;
            ys << p.agreement;
            names.push_back(p.name);
            maxError = std::max(maxError, p.error);
        }
        auto* g = m_plot->addGraph();
        g->setProperty("cluster", c);
        g->setData(xs, ys, true);
        g->setLineStyle(QCPGraph::lsNone);
        const QColor color = ClusterView::clusterColor(c);
        QColor fill = color;
        fill.setAlpha(200);
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, fill, 8));
        g->setPen(QPen(color));
        g->setSelectable(QCP::stMultipleDataRanges);
        g->selectionDecorator()->setPen(QPen(Qt::black));
        g->selectionDecorator()->setScatterStyle(
            QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(Qt::black, 2.0), QBrush(color), 12),
            QCPScatterStyle::spAll);
        g->setName(tr("Cluster %1 (%2)").arg(c).arg(points.size()));
        m_graphNames.push_back(std::move(names));
    }
    m_plot->xAxis->setRange(0, maxError > 0 ? maxError * 1.08 : 1.0);
    m_plot->yAxis->setRange(-0.04, 1.04);
    m_plot->replot();
}

QVector<QualityView::PlotPoint> QualityView::plottedPoints() const {
    QVector<PlotPoint> out;
    for (int gi = 0; gi < m_plot->graphCount(); ++gi) {
        const auto* g = m_plot->graph(gi);
        const auto& names = m_graphNames[std::size_t(gi)];
        int j = 0;
        for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it, ++j)
            out.push_back({names[std::size_t(j)], g->property("cluster").toInt(), it->key, it->value});
    }
    return out;
}

QString QualityView::adapterAt(const QPoint& pos) const {
    QString best;
    double bestDistance = 8.0 * 8.0;
    for (const auto& p : plottedPoints()) {
        const double dx = m_plot->xAxis->coordToPixel(p.error) - pos.x();
        const double dy = m_plot->yAxis->coordToPixel(p.agreement) - pos.y();
        if (dx * dx + dy * dy <= bestDistance) {
            bestDistance = dx * dx + dy * dy;
            best = p.name;
        }
    }
    return best;
}

QString QualityView::toolTipFor(const QString& name) const {
    if (!hasEvaluation()) return {};
    const auto i = m_bank->find_adapter(name.toStdString());
    if (!i) return {};
    const auto& a = m_bank->adapters[*i];
    const auto it = m_bank->quality->adapters.find(a.name);
    if (it == m_bank->quality->adapters.end()) return {};
    const auto& q = it->second;
    return tr("%1 (cluster %2)\nToken agreement %3, exact match %4\nError %5, KL %6, first divergence %7")
        .arg(name)
        .arg(a.cluster)
        .arg(percent(q.token_agreement()))
        .arg(percent(q.exact_match()))
        .arg(formatError(a.mean_error()))
        .arg(q.mean_kl, 0, 'g', 3)
        .arg(q.first_divergence < 0 ? tr("none") : QString::number(q.first_divergence));
}

void QualityView::rebuildTable() {
    const QStringList keep = selectedAdapters();
    m_applying = true;
    m_table->setRowCount(0);
    if (hasEvaluation()) {
        struct Row {
            const bank::bank_adapter* adapter;
            const bank::adapter_quality* quality;
            double value;
        };
        std::vector<Row> rows;
        for (const auto& a : m_bank->adapters) {
            const auto it = m_bank->quality->adapters.find(a.name);
            if (it != m_bank->quality->adapters.end())
                rows.push_back({&a, &it->second, metricOf(it->second)});
        }
        std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
            if (a.value != b.value) return a.value < b.value;
            if (a.quality->mean_kl != b.quality->mean_kl) return a.quality->mean_kl > b.quality->mean_kl;
            return a.adapter->name < b.adapter->name;
        });
        const std::set<std::string> raw(m_bank->raw_adapters.begin(), m_bank->raw_adapters.end());
        m_table->setRowCount(int(rows.size()));
        for (int r = 0; r < int(rows.size()); ++r) {
            const auto& a = *rows[std::size_t(r)].adapter;
            const auto& q = *rows[std::size_t(r)].quality;
            auto* name = cell(QString::fromStdString(a.name), Qt::AlignLeft | Qt::AlignVCenter);
            name->setForeground(ClusterView::clusterColor(a.cluster).darker(130));
            m_table->setItem(r, NameColumn, name);
            m_table->setItem(r, ClusterColumn, cell(QString::number(a.cluster)));
            m_table->setItem(r, AgreementColumn, cell(percent(q.token_agreement())));
            m_table->setItem(r, ExactColumn, cell(percent(q.exact_match())));
            m_table->setItem(r, ErrorColumn, cell(formatError(a.mean_error())));
            m_table->setItem(r, KlColumn, cell(QString::number(q.mean_kl, 'g', 3)));
            m_table->setItem(
                r, FirstDivergenceColumn,
                cell(q.first_divergence < 0 ? QStringLiteral("—") : QString::number(q.first_divergence)));
            auto* rawItem = new QTableWidgetItem;
            rawItem->setFlags(Qt::ItemIsSelectable | Qt::ItemIsEnabled | Qt::ItemIsUserCheckable);
            rawItem->setCheckState(raw.count(a.name) ? Qt::Checked : Qt::Unchecked);
            m_table->setItem(r, ServeRawColumn, rawItem);
        }
    }
    m_applying = false;
    applySelection(keep);
}

QStringList QualityView::worstOrder() const {
    QStringList out;
    for (int r = 0; r < m_table->rowCount(); ++r)
        out << m_table->item(r, NameColumn)->text();
    return out;
}

QStringList QualityView::selectedAdapters() const {
    QStringList names;
    for (int gi = 0; gi < m_plot->graphCount(); ++gi) {
        const auto& members = m_graphNames[std::size_t(gi)];
        for (const QCPDataRange& range : m_plot->graph(gi)->selection().dataRanges())
            for (int j = range.begin(); j < range.end(); ++j)
                if (j >= 0 && j < int(members.size())) names << members[std::size_t(j)];
    }
    names.sort();
    names.removeDuplicates();
    return names;
}

void QualityView::selectAdapters(const QStringList& names) {
    applySelection(names);
}

void QualityView::applySelection(const QStringList& names) {
    const QSet<QString> wanted(names.begin(), names.end());
    const bool wasApplying = m_applying;
    m_applying = true;
    for (int gi = 0; gi < m_plot->graphCount(); ++gi) {
        const auto& members = m_graphNames[std::size_t(gi)];
        QCPDataSelection selection;
        for (int j = 0; j < int(members.size()); ++j)
            if (wanted.contains(members[std::size_t(j)]))
                selection.addDataRange(QCPDataRange(j, j + 1), false);
        selection.simplify();
        m_plot->graph(gi)->setSelection(selection);
    }
    QItemSelection rows;
    for (int r = 0; r < m_table->rowCount(); ++r)
        if (wanted.contains(m_table->item(r, NameColumn)->text()))
            rows.select(m_table->model()->index(r, 0), m_table->model()->index(r, ColumnCount - 1));
    m_table->selectionModel()->select(rows, QItemSelectionModel::ClearAndSelect);
    m_applying = wasApplying;
    m_plot->replot();
    updateButtons();
}

void QualityView::onPlotSelectionChangedByUser() {
    if (m_applying) return;
    const QStringList names = selectedAdapters();
    applySelection(names); // the table follows
    emit adaptersSelected(names);
}

void QualityView::onTableSelectionChanged() {
    if (m_applying) return;
    QStringList names;
    for (const QModelIndex& index : m_table->selectionModel()->selectedRows(NameColumn))
        names << m_table->item(index.row(), NameColumn)->text();
    names.sort();
    m_applying = true;
    applySelection(names); // the points follow (the table keeps its own selection)
    m_applying = false;
    emit adaptersSelected(names);
}

void QualityView::onTry() {
    int row = m_table->currentRow();
    if (row < 0) {
        const auto rows = m_table->selectionModel()->selectedRows();
        if (!rows.isEmpty()) row = rows.first().row();
    }
    if (row < 0 && m_table->rowCount() > 0) row = 0; // the worst adapter
    if (row < 0) return;
    emit tryInPlayground(m_table->item(row, NameColumn)->text());
}

void QualityView::updateButtons() {
    const bool busy = isBusy();
    const bool saved = !bankDir().isEmpty();
    m_evaluate->setEnabled(m_bank && saved && !busy);
    m_evaluate->setToolTip(saved || !m_bank ? kEvaluateTip
                                            : tr("Save the workspace first: the results are stored in its "
                                                 "bank folder"));
    m_cancel->setVisible(busy);
    m_prompts->setEnabled(!busy);
    m_maxTokens->setEnabled(!busy);
    m_try->setEnabled(m_table->rowCount() > 0);
    if (m_bank && !saved && !busy && m_status->text().isEmpty())
        setStatus(tr("Save the workspace to evaluate: the results are stored in its bank folder."));
}

bool QualityView::evaluate() {
    if (isBusy()) {
        setStatus(tr("Busy: wait for the running job or cancel it."));
        return false;
    }
    const auto bank = m_session ? m_session->bank() : nullptr;
    const QString dir = bankDir();
    if (!bank || dir.isEmpty()) {
        setStatus(bank ? tr("Save the workspace first: the results are stored in its bank folder.")
                       : tr("There is no compressed bank yet: compress the fleet first."));
        return false;
    }
    QualityEvaluationRequest request;
    request.bankDir = dir;
    request.modelDir = m_modelDir ? m_modelDir() : QString();
    if (request.modelDir.trimmed().isEmpty()) request.modelDir = demoModelDir();
    request.promptsFile = m_promptsFile;
    request.promptCount = m_prompts->value();
    request.maxTokens = m_maxTokens->value();
    const FleetStore* store = m_session->store();
    for (int i = 0; i < store->size(); ++i)
        request.rawFolders << store->entry(i).summary.dir;
    auto result = std::make_shared<std::shared_ptr<const bank::compressed_bank>>();
    m_job = m_session->host()->start(
        tr("Evaluating adapter quality"),
        [request, bank, result](JobContext& ctx) {
            ctx.setStage(QStringLiteral("Evaluating"));
            *result = evaluateAndStore(request, bank, [&ctx](int done, int total) {
                ctx.setProgress(done, total);
                return !ctx.isCancelled();
            });
        },
        this);
    m_job->setProgressUnit(tr("adapters"));
    connect(m_job, &EngineJob::progress, this, [this](qint64 done, qint64 total, const QString&) {
        setStatus(total > 0 ? tr("Evaluating: %1 of %2 adapters").arg(done).arg(total) : tr("Evaluating…"));
    });
    connect(m_job, &EngineJob::finished, this,
            [this, bank, result](EngineJob::Outcome outcome, const QString& message) {
                m_job->deleteLater();
                QString text;
                bool ok = false;
                // Cancelled after the results were stored (the request came as the work returned): the
                // bank folder has them, so the session adopts them too.
                if (*result && outcome != EngineJob::Outcome::Failed) {
                    if (m_session->bank() == bank) {
                        ok = true;
                        text = tr("Evaluated %1 adapters; the results are stored in the bank.")
                                   .arg((*result)->quality ? (*result)->quality->adapters.size() : 0);
                        setStatus(text);
                        m_session->setBank(*result, false);
                    } else {
                        text = tr("The bank changed during the evaluation: its results were stored in the "
                                  "old bank folder only.");
                    }
                } else if (outcome == EngineJob::Outcome::Cancelled) {
                    text = tr("Evaluation cancelled; the bank is unchanged.");
                } else {
                    text = tr("Evaluation failed: %1").arg(message);
                }
                setStatus(text);
                updateButtons();
                emit evaluationFinished(ok, text);
            });
    setStatus(tr("Evaluating…"));
    updateButtons();
    return true;
}

void QualityView::cancel() {
    if (m_job) m_job->cancel();
}

bool QualityView::setServeRaw(const QString& name, bool raw) {
    const auto bank = m_session ? m_session->bank() : nullptr;
    const QString dir = bankDir();
    if (isBusy()) {
        setStatus(tr("Busy: wait for the running job before changing what is served raw."));
        return false;
    }
    if (!bank || dir.isEmpty()) {
        setStatus(tr("Save the workspace first: the raw list is stored in its bank folder."));
        return false;
    }
    if (!bank->find_adapter(name.toStdString())) {
        setStatus(tr("'%1' is not in the bank.").arg(name));
        return false;
    }
    QStringList list;
    for (const auto& n : bank->raw_adapters)
        if (QString::fromStdString(n) != name) list << QString::fromStdString(n);
    if (raw) list << name;
    auto result = std::make_shared<std::shared_ptr<const bank::compressed_bank>>();
    m_job = m_session->host()->start(
        raw ? tr("Serving %1 raw").arg(name) : tr("Serving %1 compressed").arg(name),
        [dir, bank, list, result](JobContext&) { *result = storeRawAdapters(dir, bank, list); }, this);
    connect(
        m_job, &EngineJob::finished, this,
        [this, bank, result, name, raw](EngineJob::Outcome outcome, const QString& message) {
            m_job->deleteLater();
            bool ok = false;
            QString text;
            if (outcome == EngineJob::Outcome::Succeeded && *result && m_session->bank() == bank) {
                ok = true;
                text =
                    raw ? tr("%1 is served from its PEFT weights from now on (restart the server to "
                             "apply).")
                              .arg(name)
                        : tr("%1 is served compressed from now on (restart the server to apply).").arg(name);
                setStatus(text);
                m_session->setBank(*result, false);
            } else {
                text = outcome == EngineJob::Outcome::Failed
                           ? tr("Could not change what is served raw: %1").arg(message)
                           : tr("The raw list was not changed.");
                refresh(); // the checkbox shows the bank again
            }
            setStatus(text);
            updateButtons();
            emit rawListStored(ok, text);
        });
    updateButtons();
    return true;
}

void QualityView::onTableItemChanged(int row, int column) {
    if (m_applying || column != ServeRawColumn) return;
    const QString name = m_table->item(row, NameColumn)->text();
    const bool raw = m_table->item(row, ServeRawColumn)->checkState() == Qt::Checked;
    if (!setServeRaw(name, raw)) {
        m_applying = true;
        m_table->item(row, ServeRawColumn)->setCheckState(raw ? Qt::Unchecked : Qt::Checked);
        m_applying = false;
    }
}

} // namespace lorafleet::ui
