// CompressController: runs one joint compression of the session's fleet (the engine's
// compress_adapters_to_bank, the same call as `lorafleet-cli compress`) in an EngineJob and publishes its
// progress (fraction, stage, current module, ETA) and outcome. No widgets: the compression panel, the
// demo and the tests drive it the same way.
//
// Invariants: the fleet is snapshotted (shared_ptr adapters) when the run starts, so removing adapters
// meanwhile is harmless. Only a successful run changes anything outside this object, and only on the GUI
// thread after the worker has finished: the session's bank (marked unsaved, so the workspace becomes
// modified and the store's cluster / error columns follow) and the workspace's compression settings.
// A cancelled or failed run leaves the session, the workspace and the store exactly as they were.
// Thread affinity: GUI thread (the engine work runs on the job's worker and shares only shared_ptrs).
#pragma once

#include "ui/common/engine_job.hpp"
#include "ui/common/eta_smoother.hpp"
#include "ui/compress/compress_settings.hpp"

#include <QElapsedTimer>
#include <QObject>
#include <QPointer>

#include <memory>
#include <optional>

namespace lorafleet::ui {

class Session;

class CompressController : public QObject {
    Q_OBJECT
public:
    struct Progress {
        double fraction = 0.0;  // 0 .. 1
        QString stage;          // "features", "cluster k=4 iteration 2", ...
        QString module;         // module being processed
        double etaSeconds = -1; // < 0: unknown; smoothed (EtaSmoother) over the run
    };
    struct Summary {
        int adapters = 0;
        int clusters = 0;
        int rank = 0;
        QString method;         // "jd-full" / "jd-diag"
        QString device;         // the backend that ran ("cpu", ...)
        double meanError = 0.0; // mean squared relative error over adapters
        double maxError = 0.0;
        bool targetMet = true; // automatic k only
        double seconds = 0.0;
        quint64 bytesOriginal = 0;   // the adapters' A and B tensors as stored
        quint64 bytesCompressed = 0; // bases + cores of the bank at 2 bytes per value (F16 storage)
    };

    explicit CompressController(Session* session, QObject* parent = nullptr);
    ~CompressController() override; // cancels and joins a running compression

    // Starts compressing the store's adapters with `settings`. False (with `error`) when a compression is
    // already running, an import is running (the fleet is still changing) or the fleet is empty; nothing
    // starts then.
    bool start(const CompressSettings& settings, QString* error = nullptr);
    void cancel();
    bool isRunning() const { return !m_job.isNull(); }
    const Progress& progress() const { return m_progress; }
    // Of the last successful run (nullopt before one).
    const std::optional<Summary>& lastSummary() const { return m_summary; }
    EngineJob* job() const { return m_job.data(); }

signals:
    void started();
    void progressChanged(const lorafleet::ui::CompressController::Progress& progress);
    // After the session was updated (when succeeded). `message`: the failure's reason, or a summary.
    void finished(lorafleet::ui::EngineJob::Outcome outcome, const QString& message);

private:
    struct Shared; // written by the worker, read on ticks
    void onTick();
    void onFinished(EngineJob::Outcome outcome, const QString& message);

    Session* m_session;
    QPointer<EngineJob> m_job;
    std::shared_ptr<Shared> m_shared;
    CompressSettings m_running;
    Progress m_progress;
    EtaSmoother m_eta;
    QElapsedTimer m_clock; // since start()
    std::optional<Summary> m_summary;
};

} // namespace lorafleet::ui
