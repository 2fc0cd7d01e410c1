// CompressController (see compress_controller.hpp).
#include "ui/compress/compress_controller.hpp"

#include "ui/fleet/import_controller.hpp"

#include "engine/backend/compress_backends.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QMutex>
#include <QMutexLocker>

#include <chrono>

namespace lorafleet::ui {

struct CompressController::Shared {
    QMutex mutex;
    Progress progress;    // latest report of the engine
    bool changed = false; // progress changed since the last tick
    // Written by the worker before it returns; read only after the job finished.
    std::shared_ptr<bank::fleet_bank> output;
    QString device;
    double seconds = 0.0;
};

CompressController::CompressController(Session* session, QObject* parent)
    : QObject(parent), m_session(session) {}

CompressController::~CompressController() {
    delete m_job.data(); // cancels and joins
}

bool CompressController::start(const CompressSettings& settings, QString* error) {
    auto fail = [error](const QString& why) {
        if (error) *error = why;
        return false;
    };
    if (isRunning()) return fail(QStringLiteral("a compression is already running"));
    if (m_session->importer()->isBusy())
        return fail(QStringLiteral("an import is running: compress when it has finished"));
    auto adapters = m_session->store()->adapters();
    if (adapters.empty()) return fail(QStringLiteral("the fleet is empty: import adapters first"));

    auto shared = std::make_shared<Shared>();
    m_shared = shared;
    m_running = settings;
    m_progress = {};
    m_eta.reset();
    m_clock.start();
    const auto options = settings.toOptions();
    const std::string device = settings.device.toStdString();
    auto base = m_session->workspace()->baseGeometry();
    const QString title =
        QStringLiteral("Compressing %1").arg(plural(qint64(adapters.size()), "adapter", "adapters"));
    m_job = m_session->host()->start(
        title,
        [shared, adapters = std::move(adapters), options, device, base, title](JobContext& ctx) {
            const auto t0 = std::chrono::steady_clock::now();
            ctx.setStage(title);
            auto backend = lorafleet::backend::make_compress_backend(device);
            {
                QMutexLocker lock(&shared->mutex);
                shared->device = QString::fromStdString(backend->name());
            }
            auto out = std::make_shared<bank::fleet_bank>(bank::compress_adapters_to_bank(
                adapters, *backend, options, base, 0, [&ctx, &shared](const compress::progress_info& info) {
                    {
                        QMutexLocker lock(&shared->mutex);
                        shared->progress.fraction = info.fraction;
                        shared->progress.stage = QString::fromStdString(info.stage);
                        shared->progress.module = QString::fromStdString(info.module);
                        shared->progress.etaSeconds = info.eta_seconds;
                        shared->changed = true;
                    }
                    ctx.setProgress(qint64(info.fraction * 1000.0), 1000);
                    return !ctx.isCancelled();
                }));
            ctx.throwIfCancelled();
            QMutexLocker lock(&shared->mutex);
            shared->output = std::move(out);
            shared->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        },
        this);
    connect(m_job, &EngineJob::tick, this, &CompressController::onTick);
    connect(m_job, &EngineJob::finished, this, &CompressController::onFinished);
    emit started();
    return true;
}

void CompressController::cancel() {
    if (m_job) m_job->cancel();
}

void CompressController::onTick() {
    if (!m_shared) return;
    {
        QMutexLocker lock(&m_shared->mutex);
        if (!m_shared->changed) return;
        m_shared->changed = false;
        m_progress = m_shared->progress;
    }
    // The engine's own ETA follows each pass's instantaneous speed; the panel shows a smoothed one.
    m_eta.add(m_clock.elapsed() / 1000.0, m_progress.fraction);
    m_progress.etaSeconds = m_eta.eta();
    emit progressChanged(m_progress);
}

void CompressController::onFinished(EngineJob::Outcome outcome, const QString& message) {
    EngineJob* job = m_job.data();
    m_job = nullptr;
    if (job) job->deleteLater();
    auto shared = std::move(m_shared);
    if (outcome != EngineJob::Outcome::Succeeded || !shared || !shared->output) {
        emit finished(outcome == EngineJob::Outcome::Succeeded ? EngineJob::Outcome::Failed : outcome,
                      outcome == EngineJob::Outcome::Cancelled
                          ? QStringLiteral("Compression cancelled")
                          : QStringLiteral("Compression failed: %1").arg(message));
        return;
    }
    auto& out = *shared->output;
    Summary s;
    s.adapters = int(out.bank.adapters.size());
    s.clusters = out.result.k;
    s.rank = int(out.result.rank);
    s.method = m_running.methodName();
    s.device = shared->device;
    s.meanError = out.result.mean_error;
    s.maxError = out.result.max_error;
    s.targetMet = out.result.target_met;
    s.seconds = shared->seconds;
    s.bytesOriginal = out.bytes_original;
    s.bytesCompressed = out.bank.stored_parameters() * 2;
    m_summary = s;

    m_session->workspace()->setCompressionSettings(m_running.toJson());
    m_session->setBank(std::make_shared<const bank::compressed_bank>(std::move(out.bank)), /*unsaved=*/true);
    const QString text =
        QStringLiteral("Compressed %1 into %2 (rank %3): mean error %4, %5 \u2192 %6 in %7")
            .arg(plural(s.adapters, "adapter", "adapters"), plural(s.clusters, "cluster", "clusters"))
            .arg(s.rank)
            .arg(formatError(s.meanError))
            .arg(formatBytes(s.bytesOriginal), formatBytes(s.bytesCompressed),
                 formatDuration(qint64(s.seconds * 1000.0)));
    emit finished(EngineJob::Outcome::Succeeded, text);
}

} // namespace lorafleet::ui
