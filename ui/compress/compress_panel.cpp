// CompressPanel (see compress_panel.hpp).
#include "ui/compress/compress_panel.hpp"

#include "engine/analysis/compress_estimate.hpp"
#include "engine/backend/compress_backends.hpp"
#include "ui/common/device_combo.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/import_controller.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QButtonGroup>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QProgressBar>
#include <QPushButton>
#include <QRadioButton>
#include <QRegularExpressionValidator>
#include <QSettings>
#include <QSpinBox>
#include <QVBoxLayout>

#include <cmath>
#include <unordered_set>

namespace lorafleet::ui {

namespace {

// A progress line that takes no room while empty.
void setLine(QLabel* label, const QString& text) {
    label->setText(text);
    label->setVisible(!text.isEmpty());
}

QString formatEta(double seconds) {
    if (seconds < 0) return QStringLiteral("ETA unknown");
    return QStringLiteral("ETA %1").arg(formatDuration(qint64(seconds * 1000.0)));
}

} // namespace

CompressPanel::CompressPanel(Session* session, QWidget* parent) : QWidget(parent), m_session(session) {
    auto* settingsBox = new QGroupBox(QStringLiteral("Settings"));
    auto* form = new QFormLayout(settingsBox);

    m_method = new QComboBox;
    m_method->addItem(QStringLiteral("JD-Full (r \u00d7 r core per adapter)"));
    m_method->addItem(QStringLiteral("JD-Diag (r values per adapter)"));
    form->addRow(QStringLiteral("&Method:"), m_method);

    m_rank = new QSpinBox;
    m_rank->setRange(1, CompressSettings::kMaxRank);
    m_rank->setToolTip(QStringLiteral("Joint rank of the shared bases of every cluster"));
    form->addRow(QStringLiteral("&Rank:"), m_rank);

    m_fixed = new QRadioButton(QStringLiteral("&Fixed"));
    m_auto = new QRadioButton(QStringLiteral("&Automatic, target error"));
    auto* group = new QButtonGroup(this);
    group->addButton(m_fixed);
    group->addButton(m_auto);
    m_clusters = new QSpinBox;
    m_clusters->setRange(1, CompressSettings::kMaxClusters);
    m_target = new QDoubleSpinBox;
    m_target->setDecimals(4);
    m_target->setRange(0.0001, 1.0);
    m_target->setSingleStep(0.01);
    m_target->setToolTip(
        QStringLiteral("Mean squared relative error \u2016\u0394W \u2212 "
                       "U\u03a3V\u1d40\u2016\u00b2/\u2016\u0394W\u2016\u00b2 "
                       "to reach with the fewest clusters (below 0.6 keeps task performance)"));
    auto* fixedRow = new QHBoxLayout;
    fixedRow->addWidget(m_fixed);
    fixedRow->addWidget(m_clusters);
    fixedRow->addStretch();
    auto* autoRow = new QHBoxLayout;
    autoRow->addWidget(m_auto);
    autoRow->addWidget(m_target);
    autoRow->addStretch();
    auto* clusterBox = new QVBoxLayout;
    clusterBox->addLayout(fixedRow);
    clusterBox->addLayout(autoRow);
    form->addRow(QStringLiteral("Clusters:"), clusterBox);

    m_normalize = new QComboBox;
    m_normalize->addItem(QStringLiteral("Unit: every adapter weighs the same"));
    m_normalize->addItem(QStringLiteral("None: adapters weigh by their norm"));
    form->addRow(QStringLiteral("&Normalization:"), m_normalize);

    auto* device = new DeviceCombo; // auto / CPU / GPU with its name, or disabled saying why none
    form->addRow(QStringLiteral("&Device:"), m_device = device);
    m_deviceInfo = new QLabel(device->description());
    m_deviceInfo->setWordWrap(true);
    m_deviceInfo->setTextInteractionFlags(Qt::TextSelectableByMouse);
    form->addRow(QString(), m_deviceInfo);

    m_seed = new QLineEdit;
    m_seed->setValidator(
        new QRegularExpressionValidator(QRegularExpression(QStringLiteral("[0-9]{1,19}")), m_seed));
    m_seed->setToolTip(
        QStringLiteral("Seed of the initialisation and of the clustering (same seed, same bank)"));
    form->addRow(QStringLiteral("&Seed:"), m_seed);

    m_run = new QPushButton(QIcon::fromTheme("media-playback-start"), QStringLiteral("&Compress Fleet"));
    m_run->setDefault(true);
    m_cancel = new QPushButton(QStringLiteral("Cancel"));
    auto* buttons = new QHBoxLayout;
    buttons->addStretch();
    buttons->addWidget(m_cancel);
    buttons->addWidget(m_run);
    form->addRow(buttons);

    auto* progressBox = new QGroupBox(QStringLiteral("Progress"));
    auto* progressLayout = new QVBoxLayout(progressBox);
    m_progress = new QProgressBar;
    m_progress->setRange(0, 1000);
    m_progress->setValue(0);
    m_progress->setFormat(QStringLiteral("%p%"));
    m_stage = new QLabel;
    m_module = new QLabel;
    m_module->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_eta = new QLabel;
    m_status = new QLabel;
    m_status->setWordWrap(true);
    progressLayout->addWidget(m_progress);
    progressLayout->addWidget(m_stage);
    progressLayout->addWidget(m_module);
    progressLayout->addWidget(m_eta);
    progressLayout->addWidget(m_status);
    for (QLabel* line : {m_module, m_eta, m_status})
        line->setVisible(false);
    m_stage->setText(QStringLiteral("Idle"));

    auto* resultBox = new QGroupBox(QStringLiteral("Current bank"));
    auto* resultLayout = new QVBoxLayout(resultBox);
    m_result = new QLabel;
    m_result->setTextFormat(Qt::RichText);
    m_result->setAlignment(Qt::AlignTop | Qt::AlignLeft);
    m_result->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_result->setWordWrap(true);
    m_stale = new QLabel;
    m_stale->setWordWrap(true);
    m_stale->setStyleSheet(QStringLiteral("QLabel { color: #b35c00; font-weight: bold; }"));
    m_stale->setVisible(false);
    resultLayout->addWidget(m_stale);
    resultLayout->addWidget(m_result);
    resultLayout->addStretch();

    auto* estimateBox = new QGroupBox(QStringLiteral("Estimate before compressing"));
    auto* estimateLayout = new QVBoxLayout(estimateBox);
    m_rankWarning = new QLabel;
    m_rankWarning->setWordWrap(true);
    m_rankWarning->setStyleSheet(QStringLiteral("QLabel { color: #b35c00; font-weight: bold; }"));
    m_rankWarning->setVisible(false);
    m_estimate = new QLabel;
    m_estimate->setTextFormat(Qt::RichText);
    m_estimate->setWordWrap(true);
    m_estimate->setTextInteractionFlags(Qt::TextSelectableByMouse);
    estimateLayout->addWidget(m_rankWarning);
    estimateLayout->addWidget(m_estimate);

    auto* left = new QVBoxLayout;
    left->addWidget(settingsBox);
    left->addWidget(estimateBox);
    left->addStretch();
    auto* right = new QVBoxLayout;
    right->addWidget(progressBox);
    right->addWidget(resultBox, 1);
    auto* layout = new QHBoxLayout(this);
    layout->addLayout(left, 1);
    layout->addLayout(right, 1);

    setSettings(CompressSettings::fromJson(m_session->workspace()->data().compression));

    for (QComboBox* c : {m_method, m_normalize, m_device})
        connect(c, &QComboBox::currentIndexChanged, this, &CompressPanel::onWidgetEdited);
    for (QSpinBox* s : {m_rank, m_clusters})
        connect(s, &QSpinBox::valueChanged, this, &CompressPanel::onWidgetEdited);
    connect(m_target, &QDoubleSpinBox::valueChanged, this, &CompressPanel::onWidgetEdited);
    connect(m_fixed, &QRadioButton::toggled, this, &CompressPanel::onWidgetEdited);
    connect(m_seed, &QLineEdit::editingFinished, this, &CompressPanel::onWidgetEdited);
    connect(m_run, &QPushButton::clicked, this, &CompressPanel::run);

    CompressController* controller = m_session->compressor();
    connect(m_cancel, &QPushButton::clicked, controller, &CompressController::cancel);
    connect(controller, &CompressController::started, this, &CompressPanel::onStarted);
    connect(controller, &CompressController::progressChanged, this, &CompressPanel::onProgress);
    connect(controller, &CompressController::finished, this, &CompressPanel::onFinished);
    connect(m_session->workspace(), &Workspace::changed, this, &CompressPanel::onWorkspaceChanged);
    connect(m_session, &Session::bankChanged, this, &CompressPanel::updateResult);
    connect(m_session->store(), &FleetStore::fleetChanged, this, &CompressPanel::updateEnabled);
    connect(m_session->store(), &FleetStore::fleetChanged, this, &CompressPanel::updateResult);
    connect(m_session, &Session::bankStateChanged, this, &CompressPanel::updateStale);
    connect(m_session->importer(), &ImportController::started, this, &CompressPanel::updateEnabled);
    connect(m_session->importer(), &ImportController::idle, this, &CompressPanel::updateEnabled);
    connect(m_session->store(), &FleetStore::fleetChanged, this, &CompressPanel::updateEstimate);
    connect(m_session, &Session::workspaceReset, this, [this] {
        if (m_session->compressor()->isRunning()) return; // its finished() resets the lines
        m_progress->setValue(0);
        m_stage->setText(QStringLiteral("Idle"));
        for (QLabel* line : {m_module, m_eta, m_status})
            setLine(line, {});
    });
    updateResult();
    updateEnabled();
    updateStale();
    updateEstimate();
}

CompressSettings CompressPanel::settings() const {
    CompressSettings s;
    s.method = m_method->currentIndex() == 1 ? compress::jd_method::diag : compress::jd_method::full;
    s.rank = m_rank->value();
    s.clusters = m_auto->isChecked() ? 0 : m_clusters->value();
    s.targetError = m_target->value();
    s.normalize = m_normalize->currentIndex() == 0;
    s.device = m_device->currentData().toString();
    bool ok = false;
    const auto seed = m_seed->text().toULongLong(&ok);
    if (ok) s.seed = seed;
    return s;
}

void CompressPanel::setSettings(const CompressSettings& s) {
    const bool was = m_updating;
    m_updating = true;
    m_method->setCurrentIndex(s.method == compress::jd_method::diag ? 1 : 0);
    m_rank->setValue(s.rank);
    m_fixed->setChecked(s.clusters > 0);
    m_auto->setChecked(s.clusters == 0);
    if (s.clusters > 0) m_clusters->setValue(s.clusters);
    m_target->setValue(s.targetError);
    m_normalize->setCurrentIndex(s.normalize ? 0 : 1);
    m_device->setCurrentIndex(std::max(0, m_device->findData(s.device)));
    m_seed->setText(QString::number(s.seed));
    m_updating = was;
    updateEnabled();
    updateEstimate();
}

void CompressPanel::onWidgetEdited() {
    updateEnabled();
    updateEstimate();
    if (m_updating) return;
    m_session->workspace()->setCompressionSettings(settings().toJson());
}

void CompressPanel::onWorkspaceChanged() {
    if (m_updating) return;
    const CompressSettings fromDoc = CompressSettings::fromJson(m_session->workspace()->data().compression);
    if (!(fromDoc == settings())) setSettings(fromDoc);
}

void CompressPanel::run() {
    QString error;
    if (!m_session->compressor()->start(settings(), &error)) setLine(m_status, error);
}

void CompressPanel::onStarted() {
    m_progress->setValue(0);
    m_stage->setText(QStringLiteral("Starting"));
    setLine(m_module, {});
    setLine(m_eta, {});
    setLine(m_status, {});
    updateEnabled();
}

void CompressPanel::onProgress(const CompressController::Progress& p) {
    m_progress->setValue(int(std::lround(p.fraction * 1000.0)));
    m_stage->setText(QStringLiteral("Stage: %1").arg(p.stage));
    setLine(m_module, p.module.isEmpty() ? QString() : QStringLiteral("Module: %1").arg(p.module));
    setLine(m_eta, formatEta(p.etaSeconds));
}

void CompressPanel::onFinished(EngineJob::Outcome outcome, const QString& message) {
    if (outcome == EngineJob::Outcome::Succeeded) {
        m_progress->setValue(1000);
        m_summaryBank = m_session->bank().get();
        setLine(m_eta, {});
        setLine(m_module, {});
        m_stage->setText(QStringLiteral("Done"));
        updateResult();
    } else {
        m_stage->setText(outcome == EngineJob::Outcome::Cancelled ? QStringLiteral("Cancelled")
                                                                  : QStringLiteral("Failed"));
        // Nothing is left to wait for: no ETA, no current module, no half-filled bar.
        setLine(m_eta, {});
        setLine(m_module, {});
        m_progress->setValue(0);
    }
    setLine(m_status, message);
    updateEnabled();
}

void CompressPanel::updateEnabled() {
    const bool running = m_session->compressor()->isRunning();
    const bool importing = m_session->importer()->isBusy();
    m_run->setEnabled(!running && !importing && !m_session->store()->isEmpty());
    m_run->setToolTip(importing ? QStringLiteral("An import is running: compress when it has finished")
                                : QString());
    m_cancel->setEnabled(running);
    m_method->setEnabled(!running); // the settings of a running compression stay what it runs with
    m_rank->setEnabled(!running);
    m_fixed->setEnabled(!running);
    m_auto->setEnabled(!running);
    m_normalize->setEnabled(!running);
    m_device->setEnabled(!running);
    m_seed->setEnabled(!running);
    m_clusters->setEnabled(!running && m_fixed->isChecked());
    m_target->setEnabled(!running && m_auto->isChecked());
}

QString CompressPanel::staleText() const {
    return m_stale->isVisibleTo(this) ? m_stale->text() : QString();
}

void CompressPanel::updateStale() {
    const QString text = m_session->bankStalenessText();
    m_stale->setText(text.isEmpty() ? QString()
                                    : text + QStringLiteral(". Compress again to include the changes."));
    m_stale->setVisible(!text.isEmpty());
}

QString CompressPanel::deviceText() const {
    return m_deviceInfo->text();
}

QString CompressPanel::resultText() const {
    const auto current = m_session->bank();
    if (!current) return {};
    QStringList rows;
    std::unordered_set<std::string> names;
    for (const auto& a : current->adapters)
        names.insert(a.name);
    quint64 original = 0;
    int present = 0;
    for (const auto& e : m_session->store()->entries())
        if (names.count(e.adapter->name)) {
            original += e.adapter->weight_bytes();
            ++present;
        }
    const auto& summary = m_session->compressor()->lastSummary();
    const bool fresh = summary && m_summaryBank == current.get();
    if (fresh) original = summary->bytesOriginal;
    const quint64 compressed = current->stored_parameters() * 2;
    rows << QStringLiteral("Adapters\t%1").arg(formatCount(qint64(current->adapters.size())));
    rows << QStringLiteral("Method\t%1, rank %2")
                .arg(QString::fromLatin1(compress::to_string(current->kind)))
                .arg(current->rank);
    rows << QStringLiteral("Clusters\t%1").arg(current->clusters);
    rows << QStringLiteral("Mean error\t%1 (max %2)")
                .arg(formatError(current->mean_error()), formatError(current->max_error()));
    if (fresh || present == int(current->adapters.size()))
        rows << QStringLiteral("Original\t%1 of LoRA weights").arg(formatBytes(original));
    else
        rows << QStringLiteral("Original\tunknown (%1 of the bank's adapters are in the fleet)").arg(present);
    rows << QStringLiteral("Compressed\t%1 (F16 bases and cores)").arg(formatBytes(compressed));
    if (original > 0 && (fresh || present == int(current->adapters.size())))
        rows << QStringLiteral("Ratio\t%1\u00d7 smaller (%2% of the original)")
                    .arg(double(original) / double(std::max<quint64>(1, compressed)), 0, 'f', 1)
                    .arg(100.0 * double(compressed) / double(original), 0, 'f', 1);
    if (fresh) {
        rows << QStringLiteral("Time\t%1 on %2")
                    .arg(formatDuration(qint64(summary->seconds * 1000.0)), summary->device);
        if (!summary->targetMet)
            rows << QStringLiteral("Note\ttarget error not reached with the cluster cap");
    }
    return rows.join('\n');
}

void CompressPanel::updateResult() {
    const QString text = resultText();
    if (text.isEmpty()) {
        m_result->setText(
            QStringLiteral("<p>No bank yet: choose the settings and press <b>Compress Fleet</b>.</p>"));
        return;
    }
    QString html = QStringLiteral("<table cellspacing='6'>");
    for (const QString& row : text.split('\n')) {
        const auto cells = row.split('\t');
        html += QStringLiteral("<tr><td><b>%1</b></td><td>%2</td></tr>")
                    .arg(cells.value(0).toHtmlEscaped(), cells.value(1).toHtmlEscaped());
    }
    html += QStringLiteral("</table>");
    m_result->setText(html);
}

} // namespace lorafleet::ui

namespace lorafleet::ui {

namespace {

QString speedKey(const QString& device) {
    return QStringLiteral("compress/speed-v3/%1").arg(device);
}

} // namespace

void CompressPanel::setMachineSpeed(double unitsPerSecond) {
    m_speed = unitsPerSecond;
    m_speedDevice = settings().device;
    updateEstimate();
}

void CompressPanel::showEvent(QShowEvent* event) {
    QWidget::showEvent(event);
    measureSpeedIfNeeded();
}

void CompressPanel::measureSpeedIfNeeded() {
    const QString device = settings().device;
    if (m_measuring || (m_speed > 0 && m_speedDevice == device)) return;
    const double cached = QSettings().value(speedKey(device), 0.0).toDouble();
    if (cached > 0) {
        m_speed = cached;
        m_speedDevice = device;
        updateEstimate();
        return;
    }
    // Once per device on this machine: a small compression timed on a worker (a fraction of a second),
    // when nothing else computes (an import or compression running beside it would slow it down).
    if (m_session->isBusy()) {
        connect(m_session, &Session::idle, this, &CompressPanel::measureSpeedIfNeeded,
                Qt::SingleShotConnection);
        return;
    }
    m_measuring = true;
    auto speed = std::make_shared<double>(0.0);
    const std::string name = device.toStdString();
    EngineJob* job = m_session->host()->start(
        QStringLiteral("Measuring this machine's compression speed"),
        [speed, name](JobContext&) {
            auto backend = lorafleet::backend::make_compress_backend(name, 1); // one thread: repeatable
            *speed = analysis::measure_machine_speed(*backend);
        },
        this);
    connect(job, &EngineJob::finished, this,
            [this, job, speed, device](EngineJob::Outcome outcome, const QString&) {
                m_measuring = false;
                job->deleteLater();
                if (outcome != EngineJob::Outcome::Succeeded || !(*speed > 0)) return;
                QSettings().setValue(speedKey(device), *speed);
                if (settings().device == device) {
                    m_speed = *speed;
                    m_speedDevice = device;
                    updateEstimate();
                }
            });
}

QString CompressPanel::estimateText() const {
    return m_estimate->text();
}

QString CompressPanel::rankWarningText() const {
    return m_rankWarning->isVisibleTo(this) ? m_rankWarning->text() : QString();
}

void CompressPanel::updateEstimate() {
    if (!m_estimate) return;
    const auto fleet = m_session->store()->adapters();
    if (fleet.empty()) {
        m_estimate->setText(QStringLiteral("Import adapters to see the bank's size, memory and time."));
        m_rankWarning->setVisible(false);
        return;
    }
    const CompressSettings s = settings();
    if (m_speedDevice != s.device) {
        m_speed = 0;
        if (isVisible())
            QMetaObject::invokeMethod(this, &CompressPanel::measureSpeedIfNeeded, Qt::QueuedConnection);
    }
    const auto shape = analysis::shape_of(fleet);
    const auto e =
        analysis::estimate_compression(shape, s.toOptions(), m_speedDevice == s.device ? m_speed : 0);
    const quint64 original = m_session->store()->totalWeightBytes();
    QStringList rows;
    const auto ratio = [original](quint64 bytes) {
        return bytes > 0 ? double(original) / double(bytes) : 0.0;
    };
    if (e.bank_bytes_min == e.bank_bytes_max)
        rows << QStringLiteral("<b>Bank size</b>: %1%2, %3\u00d7 smaller than the %4 of LoRA weights")
                    .arg(e.bank_bytes_exact ? QString() : QStringLiteral("at most "),
                         formatBytes(e.bank_bytes_max))
                    .arg(QLocale().toString(ratio(e.bank_bytes_max), 'f', 1), formatBytes(original));
    else
        rows << QStringLiteral(
                    "<b>Bank size</b>: %1 (1 cluster) to %2 (%3 clusters), against %4 of LoRA weights")
                    .arg(formatBytes(e.bank_bytes_min), formatBytes(e.bank_bytes_max))
                    .arg(std::min(s.toOptions().max_clusters, int(shape.adapters)))
                    .arg(formatBytes(original));
    if (e.bank_bytes_min >= original && original > 0)
        rows << QStringLiteral(
            "<span style='color:#c0392b'><b>The bank would not be smaller than the adapters"
            "</b>: lower the rank or the cluster count.</span>");
    rows << QStringLiteral("<b>Peak memory</b>: about %1 (model from the module shapes)")
                .arg(formatBytes(e.peak_bytes));
    if (e.seconds_min < 0)
        rows << QStringLiteral("<b>Time</b>: measuring this machine's speed\u2026");
    else if (e.min_passes == e.max_passes)
        rows << QStringLiteral("<b>Time</b>: about %1 (%2)")
                    .arg(formatDuration(qint64(e.seconds_min * 1000.0)),
                         plural(e.min_passes, QStringLiteral("pass"), QStringLiteral("passes")));
    else
        rows << QStringLiteral("<b>Time</b>: %1 to %2 (%3 to %4 passes over the fleet while clustering)")
                    .arg(formatDuration(qint64(e.seconds_min * 1000.0)),
                         formatDuration(qint64(e.seconds_max * 1000.0)))
                    .arg(e.min_passes)
                    .arg(e.max_passes);
    m_estimate->setText(rows.join(QStringLiteral("<br>")));

    QString warning;
    if (e.rank_above_source)
        warning =
            QStringLiteral("Rank %1 is above the adapters' own rank (%2): each adapter alone needs only %2; "
                           "the extra directions only help clusters that share them, and the bank grows.")
                .arg(s.rank)
                .arg(shape.max_source_rank);
    else if (e.rank_at_least_source)
        warning =
            QStringLiteral("Rank %1 equals the adapters' own rank: each adapter alone would fit exactly; the "
                           "bank saves space only through the bases its clusters share.")
                .arg(s.rank);
    m_rankWarning->setText(warning);
    m_rankWarning->setVisible(!warning.isEmpty());
}

} // namespace lorafleet::ui
