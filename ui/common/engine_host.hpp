// EngineHost: starts EngineJobs for the console's controllers and announces the ones the operator should
// see (the status bar shows their progress and a Cancel button). It does not own jobs: each job is a
// child of the QObject that asked for it, so the job (and its thread) ends with its owner.
// Thread affinity: GUI thread.
#pragma once

#include "ui/common/engine_job.hpp"

#include <QObject>
#include <QPointer>

namespace lorafleet::ui {

class EngineHost : public QObject {
    Q_OBJECT
public:
    enum class Visibility { Shown, Quiet }; // Quiet: background work (e.g. details of one adapter)

    explicit EngineHost(QObject* parent = nullptr);

    // Creates a job parented to `owner`, starts it and (when Shown) emits jobStarted. The caller connects
    // to the job's signals right after this returns: the first signal arrives on a later event loop turn.
    EngineJob* start(const QString& title, EngineJob::Work work, QObject* owner,
                     Visibility visibility = Visibility::Shown);

    QList<EngineJob*> runningJobs() const; // Shown jobs still running, oldest first
    void cancelAll();

signals:
    void jobStarted(lorafleet::ui::EngineJob* job);

private:
    QList<QPointer<EngineJob>> m_jobs;
};

} // namespace lorafleet::ui
