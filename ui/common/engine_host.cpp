// EngineHost (see engine_host.hpp).
#include "ui/common/engine_host.hpp"

namespace lorafleet::ui {

EngineHost::EngineHost(QObject* parent) : QObject(parent) {}

EngineJob* EngineHost::start(const QString& title, EngineJob::Work work, QObject* owner,
                             Visibility visibility) {
    auto* job = new EngineJob(title, std::move(work), owner);
    job->start();
    if (visibility == Visibility::Shown) {
        m_jobs.removeAll(nullptr);
        m_jobs.append(job);
        emit jobStarted(job);
    }
    return job;
}

QList<EngineJob*> EngineHost::runningJobs() const {
    QList<EngineJob*> out;
    for (const auto& job : m_jobs)
        if (job && job->isRunning()) out.append(job.data());
    return out;
}

void EngineHost::cancelAll() {
    for (const auto& job : m_jobs)
        if (job) job->cancel();
}

} // namespace lorafleet::ui
