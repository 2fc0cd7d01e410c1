// AdapterDetailsPane (see adapter_details_pane.hpp).
#include "ui/fleet/adapter_details_pane.hpp"

#include "engine/analysis/module_norms.hpp"
#include "ui/common/elided_label.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/module_table_model.hpp"

#include <QGridLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLocale>
#include <QPlainTextEdit>
#include <QStackedWidget>
#include <QTableView>
#include <QVBoxLayout>

#include <cmath>

namespace lorafleet::ui {

AdapterDetailsPane::AdapterDetailsPane(EngineHost* host, QWidget* parent)
    : QWidget(parent), m_host(host), m_modules(new ModuleTableModel(this)) {
    m_stack = new QStackedWidget(this);
    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(0, 0, 0, 0);
    outer->addWidget(m_stack);

    m_hint = new QLabel(m_stack);
    m_hint->setAlignment(Qt::AlignCenter);
    m_hint->setWordWrap(true);
    m_hint->setEnabled(false);
    m_hint->setFrameShape(QFrame::StyledPanel);
    m_stack->addWidget(m_hint);

    auto* page = new QWidget(m_stack);
    auto* layout = new QVBoxLayout(page);
    layout->setContentsMargins(8, 4, 4, 4);
    m_title = new ElidedLabel(Qt::ElideRight, page);
    QFont titleFont = m_title->font();
    titleFont.setPointSizeF(titleFont.pointSizeF() * 1.3);
    titleFont.setBold(true);
    m_title->setFont(titleFont);
    m_path = new ElidedLabel(Qt::ElideMiddle, page);
    m_path->setEnabled(false);
    layout->addWidget(m_title);
    layout->addWidget(m_path);

    auto* grid = new QGridLayout;
    grid->setHorizontalSpacing(12);
    grid->setVerticalSpacing(3);
    m_rank = addField(grid, 0, 0, "Rank");
    m_alpha = addField(grid, 0, 2, "Alpha / scale");
    m_dtype = addField(grid, 1, 0, "Weights");
    m_layers = addField(grid, 1, 2, "Modules");
    m_params = addField(grid, 2, 0, "Parameters");
    m_size = addField(grid, 2, 2, "Size");
    m_base = addField(grid, 3, 0, "Trained on");
    m_norm = addField(grid, 3, 2, "\u2016\u0394W\u2016_F total");
    m_cluster = addField(grid, 4, 0, "Cluster");
    m_meanError = addField(grid, 4, 2, "Mean error");
    m_meanError->setToolTip(QStringLiteral("Mean over the adapter's modules of ||\u0394W \u2212 "
                                           "U\u03a3V\u1d40||\u00b2_F / ||\u0394W||\u00b2_F in the "
                                           "compressed bank"));
    grid->setColumnStretch(1, 1);
    grid->setColumnStretch(3, 1);
    layout->addLayout(grid);

    m_table = new QTableView(page);
    m_table->setModel(m_modules);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setAlternatingRowColors(true);
    m_table->setWordWrap(false);
    m_table->setTextElideMode(Qt::ElideMiddle);
    m_table->verticalHeader()->hide();
    m_table->verticalHeader()->setSectionResizeMode(QHeaderView::Fixed);
    m_table->verticalHeader()->setDefaultSectionSize(m_table->fontMetrics().height() + 6);
    auto* header = m_table->horizontalHeader();
    header->setSectionResizeMode(ModuleTableModel::Path, QHeaderView::Stretch);
    for (int c = ModuleTableModel::Rank; c < ModuleTableModel::ColumnCount; ++c)
        header->setSectionResizeMode(c, QHeaderView::ResizeToContents);
    header->setHighlightSections(false);
    layout->addWidget(m_table, 1);

    m_warningsTitle = new QLabel(QStringLiteral("<b>Warnings</b>"), page);
    m_warnings = new QPlainTextEdit(page);
    m_warnings->setReadOnly(true);
    m_warnings->setMaximumHeight(m_warnings->fontMetrics().height() * 5 + 10);
    layout->addWidget(m_warningsTitle);
    layout->addWidget(m_warnings);
    m_stack->addWidget(page);

    showSelectionCount(0);
}

AdapterDetailsPane::~AdapterDetailsPane() {
    delete m_job.data();
}

ElidedLabel* AdapterDetailsPane::addField(QGridLayout* grid, int row, int column, const QString& title) {
    auto* name = new QLabel(title + QLatin1Char(':'));
    name->setEnabled(false);
    auto* value = new ElidedLabel;
    grid->addWidget(name, row, column);
    grid->addWidget(value, row, column + 1);
    return value;
}

void AdapterDetailsPane::showSelectionCount(int selected) {
    delete m_job.data();
    m_modules->setAdapter(nullptr);
    m_hint->setText(selected == 0
                        ? QStringLiteral("Select an adapter to see its modules.")
                        : QStringLiteral("%1 selected").arg(plural(selected, "adapter", "adapters")));
    m_stack->setCurrentWidget(m_hint);
}

void AdapterDetailsPane::setBank(std::shared_ptr<const bank::compressed_bank> bank) {
    m_modules->setBank(std::move(bank));
    updateBankFields();
}

void AdapterDetailsPane::updateBankFields() {
    const QString none = QStringLiteral("\u2014");
    if (!m_modules->hasBankEntry()) {
        m_cluster->setText(none);
        m_meanError->setText(none);
        return;
    }
    m_cluster->setText(QString::number(m_modules->cluster()));
    const double mean = m_modules->meanError();
    m_meanError->setText(std::isnan(mean) ? none : formatError(mean));
}

QString AdapterDetailsPane::clusterText() const {
    return m_cluster->text();
}

QString AdapterDetailsPane::meanErrorText() const {
    return m_meanError->text();
}

void AdapterDetailsPane::showEntry(const FleetEntry& entry) {
    const AdapterSummary& s = entry.summary;
    const QLocale locale;
    if (m_modules->adapter() == entry.adapter) return; // same adapter: keep the computed norms
    m_title->setText(s.name);
    m_path->setElidedText(s.dir);
    m_rank->setText(s.minRank == s.maxRank ? QString::number(s.maxRank)
                                           : QStringLiteral("%1\u2013%2").arg(s.minRank).arg(s.maxRank));
    const auto& cfg = entry.adapter->config;
    const double scale = entry.adapter->modules.empty() ? 0.0 : entry.adapter->modules.front().scale;
    m_alpha->setText(QStringLiteral("%1 / %2%3")
                         .arg(locale.toString(cfg.lora_alpha, 'g', 6), locale.toString(scale, 'g', 4),
                              cfg.use_rslora ? QStringLiteral(" (rsLoRA)") : QString()));
    m_dtype->setText(s.dtype);
    m_layers->setText(QStringLiteral("%1 in %2").arg(s.moduleCount).arg(plural(s.layers, "layer", "layers")));
    m_params->setText(formatCount(s.parameters));
    m_size->setText(formatBytes(s.fileBytes));
    m_size->setToolTip(QStringLiteral("%1 bytes on disk, of which %2 are LoRA factors")
                           .arg(formatCount(qint64(s.fileBytes)), formatBytes(s.weightBytes)));
    const QString base = QString::fromStdString(cfg.base_model_name_or_path);
    m_base->setElidedText(base.isEmpty() ? QStringLiteral("\u2014") : base);
    m_norm->setText(QStringLiteral("\u2026"));
    m_warnings->setPlainText(s.warnings.join('\n'));
    m_warnings->setVisible(!s.warnings.isEmpty());
    m_warningsTitle->setVisible(!s.warnings.isEmpty());
    m_modules->setAdapter(entry.adapter);
    updateBankFields();
    m_stack->setCurrentIndex(1);
    startNorms();
}

void AdapterDetailsPane::startNorms() {
    delete m_job.data(); // cancels and joins the previous adapter's computation
    auto adapter = m_modules->adapter();
    if (!adapter) return;
    auto norms = std::make_shared<std::vector<double>>();
    m_job = m_host->start(
        QStringLiteral("Module norms of %1").arg(QString::fromStdString(adapter->name)),
        [adapter, norms](JobContext& ctx) {
            *norms = analysis::update_frobenius_norms(*adapter, [&ctx] { return !ctx.isCancelled(); });
        },
        this, EngineHost::Visibility::Quiet);
    EngineJob* job = m_job.data();
    connect(job, &EngineJob::finished, this, [this, job, adapter, norms](EngineJob::Outcome outcome) {
        job->deleteLater();
        if (m_job == job) m_job = nullptr;
        if (outcome != EngineJob::Outcome::Succeeded || m_modules->adapter() != adapter) return;
        m_modules->setNorms(*norms);
        const double total = m_modules->totalNorm();
        m_norm->setText(std::isnan(total) ? QStringLiteral("\u2014") : QLocale().toString(total, 'f', 4));
        emit normsReady();
    });
}

} // namespace lorafleet::ui
