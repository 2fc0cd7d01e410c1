// MainStatusBar (see main_status_bar.hpp).
#include "ui/main/main_status_bar.hpp"

#include "engine/backend/device_registry.hpp"
#include "ui/common/elided_label.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/process_memory.hpp"
#include "ui/common/text_format.hpp"

#include <QHBoxLayout>
#include <QLabel>
#include <QLocale>
#include <QProgressBar>
#include <QStyle>
#include <QToolButton>

#include <algorithm>
#include <thread>

namespace lorafleet::ui {

namespace {
constexpr int kMemoryIntervalMs = 2000;
}

QString MainStatusBar::backendSummary() {
    const auto& cuda = backend::devices();
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    if (cuda.available && !cuda.devices.empty()) {
        const auto& d = cuda.devices.front();
        return QStringLiteral("GPU: %1 (%2 MiB)").arg(QString::fromStdString(d.name)).arg(d.memory_mb);
    }
    return QStringLiteral("CPU, %1 threads - GPU unavailable: %2")
        .arg(threads)
        .arg(QString::fromStdString(cuda.reason));
}

MainStatusBar::MainStatusBar(EngineHost* host, QWidget* parent) : QStatusBar(parent), m_host(host) {
    m_operation = new ElidedLabel(QStringLiteral("Ready"), Qt::ElideMiddle, this);
    addWidget(m_operation, 1);

    m_jobBox = new QWidget(this);
    auto* jobLayout = new QHBoxLayout(m_jobBox);
    jobLayout->setContentsMargins(0, 0, 0, 0);
    jobLayout->setSpacing(6);
    m_jobLabel = new QLabel(m_jobBox);
    m_jobLabel->setMaximumWidth(fontMetrics().horizontalAdvance(QLatin1Char('x')) * 40);
    m_jobProgress = new QProgressBar(m_jobBox);
    m_jobProgress->setFixedWidth(220);
    m_jobProgress->setMaximumHeight(fontMetrics().height() + 4);
    m_jobProgress->setTextVisible(true);
    m_cancel = new QToolButton(m_jobBox);
    m_cancel->setText(QStringLiteral("Cancel"));
    m_cancel->setIcon(style()->standardIcon(QStyle::SP_DialogCancelButton));
    m_cancel->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
    m_cancel->setAutoRaise(true);
    m_cancel->setToolTip(QStringLiteral("Stop after the current item; what is done so far is kept"));
    jobLayout->addWidget(m_jobLabel);
    jobLayout->addWidget(m_jobProgress);
    jobLayout->addWidget(m_cancel);
    addPermanentWidget(m_jobBox);
    m_jobBox->hide();
    connect(m_cancel, &QToolButton::clicked, this, [this] {
        if (m_job) m_job->cancel();
        m_cancel->setEnabled(false);
    });

    m_stale = new QLabel(this);
    m_stale->setStyleSheet(QStringLiteral("QLabel { color: #b35c00; font-weight: bold; }"));
    addPermanentWidget(m_stale);
    m_stale->hide();

    m_memory = new QLabel(this);
    m_memory->setToolTip(QStringLiteral("Resident memory of this process (/proc/self/statm), every 2 s"));
    addPermanentWidget(m_memory);
    m_backend = new ElidedLabel(backendSummary(), Qt::ElideRight, this);
    m_backend->setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Preferred);
    m_backend->setMaximumWidth(fontMetrics().horizontalAdvance(QLatin1Char('x')) * 64);
    m_backend->setToolTip(QStringLiteral("Compute backend for compression and serving:\n") +
                          m_backend->text());
    addPermanentWidget(m_backend);

    updateMemory();
    m_memoryTimer.setInterval(kMemoryIntervalMs);
    connect(&m_memoryTimer, &QTimer::timeout, this, &MainStatusBar::updateMemory);
    m_memoryTimer.start();

    connect(host, &EngineHost::jobStarted, this, &MainStatusBar::track);
}

QString MainStatusBar::jobProgressText(qint64 done, qint64 total, const QString& unit) {
    if (total <= 0) return {};
    if (!unit.isEmpty())
        return QStringLiteral("%1 of %2 %3").arg(formatCount(done), formatCount(total), unit);
    const double percent = 100.0 * double(std::clamp<qint64>(done, 0, total)) / double(total);
    return QStringLiteral("%1%").arg(QLocale().toString(percent, 'f', 0));
}

QString MainStatusBar::jobProgressBarText() const {
    return m_jobBox->isVisibleTo(this) ? m_jobProgress->text() : QString();
}

void MainStatusBar::setBankStaleText(const QString& text) {
    m_stale->setText(text.isEmpty() ? QString() : QStringLiteral("Bank out of date"));
    m_stale->setToolTip(text);
    m_stale->setVisible(!text.isEmpty());
}

QString MainStatusBar::bankStaleText() const {
    return m_stale->isVisibleTo(this) ? m_stale->toolTip() : QString();
}

void MainStatusBar::setOperationText(const QString& text) {
    m_operation->setElidedText(oneLine(text, 1000));
}

QString MainStatusBar::operationText() const {
    return m_operation->text();
}

QString MainStatusBar::memoryText() const {
    return m_memory->text();
}

void MainStatusBar::track(EngineJob* job) {
    connect(job, &EngineJob::finished, this, &MainStatusBar::onJobFinished);
    // A job deleted before it finished (an aborted import) never emits finished.
    connect(job, &QObject::destroyed, this,
            [this] { QTimer::singleShot(0, this, &MainStatusBar::onJobFinished); });
    showJob(job);
}

void MainStatusBar::showJob(EngineJob* job) {
    if (m_job) disconnect(m_job, &EngineJob::progress, this, nullptr);
    m_job = job;
    m_jobLabel->setText(job->title());
    m_jobProgress->setRange(0, 0);
    m_cancel->setEnabled(true);
    connect(job, &EngineJob::progress, this, [this](qint64 done, qint64 total, const QString& stage) {
        if (!stage.isEmpty()) m_jobLabel->setText(stage);
        if (total <= 0) {
            m_jobProgress->setRange(0, 0);
            return;
        }
        // QProgressBar takes int: scale very large counts down.
        const int scale = total > 1'000'000'000 ? int(total / 1'000'000'000 + 1) : 1;
        m_jobProgress->setRange(0, int(total / scale));
        m_jobProgress->setValue(int(done / scale));
        m_jobProgress->setFormat(jobProgressText(done, total, m_job ? m_job->progressUnit() : QString()));
    });
    m_jobBox->show();
}

void MainStatusBar::onJobFinished() {
    const auto running = m_host->runningJobs();
    if (!running.isEmpty()) {
        if (!m_job || !m_job->isRunning()) showJob(running.back());
        return;
    }
    m_job = nullptr;
    m_jobBox->hide();
}

void MainStatusBar::updateMemory() {
    const auto rss = residentSetBytes();
    m_memory->setText(rss ? QStringLiteral("Memory %1").arg(formatBytes(*rss))
                          : QStringLiteral("Memory n/a"));
}

} // namespace lorafleet::ui
