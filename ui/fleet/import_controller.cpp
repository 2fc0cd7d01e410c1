// ImportController (see import_controller.hpp).
#include "ui/fleet/import_controller.hpp"

#include "ui/common/engine_host.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/import_job.hpp"

namespace lorafleet::ui {

namespace {

// "a, b, c, d, e and 45 more".
QString nameList(const QStringList& names, int shown = 5) {
    if (names.size() <= shown) return names.join(QLatin1String(", "));
    return QStringLiteral("%1 and %2 more")
        .arg(names.first(shown).join(QLatin1String(", ")))
        .arg(names.size() - shown);
}

} // namespace

QString ImportReport::summary() const {
    if (!failure.isEmpty()) return QStringLiteral("Import failed: %1").arg(failure);
    QStringList parts;
    parts << QStringLiteral("%1 %2").arg(cancelled ? QStringLiteral("Import cancelled after")
                                                   : QStringLiteral("Imported"),
                                         plural(added, "adapter", "adapters"));
    if (duplicates) parts << QStringLiteral("%1 already in the fleet").arg(formatCount(duplicates));
    if (problems) parts << plural(problems, "problem", "problems");
    if (!renamed.isEmpty()) parts << QStringLiteral("%1 renamed").arg(formatCount(renamed.size()));
    QString line = parts.join(QLatin1String(", ")) + QStringLiteral(" in %1").arg(formatDuration(elapsedMs));
    if (!refusedNames.isEmpty())
        line += QStringLiteral("; refused %1 whose name is already in the fleet: %2")
                    .arg(plural(refusedNames.size(), "adapter", "adapters"), nameList(refusedNames));
    if (!renamed.isEmpty()) line += QStringLiteral("; renamed: %1").arg(nameList(renamed));
    return line;
}

ImportController::ImportController(FleetStore* store, EngineHost* host, QObject* parent)
    : QObject(parent), m_store(store), m_host(host) {}

ImportController::~ImportController() {
    m_pending.clear();
    delete m_job.data(); // joins the worker; its results die with m_work
}

void ImportController::importPaths(const QStringList& paths, std::optional<DuplicateNames> policy) {
    if (paths.isEmpty()) return;
    m_pending.append({paths, policy.value_or(m_policy)});
    if (!m_job) startNext();
}

QStringList ImportController::currentPaths() const {
    return m_job ? m_report.paths : QStringList();
}

void ImportController::cancel() {
    m_pending.clear();
    if (m_job) m_job->cancel();
}

void ImportController::abort() {
    const bool wasBusy = isBusy();
    m_pending.clear();
    if (m_job) {
        EngineJob* job = m_job.data();
        job->disconnect(this);
        delete job; // cancels and joins
    }
    m_work.reset();
    if (wasBusy) emit idle();
}

void ImportController::startNext() {
    if (m_pending.isEmpty()) return;
    const auto [paths, policy] = m_pending.takeFirst();
    m_report = ImportReport{};
    m_report.paths = paths;
    m_report.policy = policy;
    std::unordered_set<std::string> names;
    for (const auto& e : m_store->entries())
        names.insert(e.adapter->name);
    m_work = std::make_shared<ImportJob>(paths, m_store->keys(), m_base, std::move(names), policy);
    auto work = m_work;
    const QString title = paths.size() == 1 ? QStringLiteral("Importing %1").arg(paths.front())
                                            : QStringLiteral("Importing %1 folders").arg(paths.size());
    m_job = m_host->start(
        title, [work](JobContext& ctx) { work->run(ctx); }, this);
    m_job->setProgressUnit(QStringLiteral("adapters"));
    connect(m_job, &EngineJob::tick, this, &ImportController::drain);
    connect(m_job, &EngineJob::finished, this, &ImportController::onFinished);
    emit started(paths);
}

void ImportController::drain() {
    if (!m_work) return;
    auto entries = m_work->loaded().takeAll();
    if (!entries.empty()) {
        const auto [added, duplicates] = m_store->append(std::move(entries));
        m_report.added += added;
        m_report.duplicates += duplicates;
    }
    for (const auto& clash : m_work->nameClashes().takeAll()) {
        if (clash.renamed.isEmpty()) {
            m_report.refusedNames << clash.name;
            m_report.refusedDirs << clash.dir;
        } else {
            m_report.renamed << QStringLiteral("%1 \u2192 %2").arg(clash.name, clash.renamed);
        }
    }
    const auto problems = m_work->problems().takeAll();
    if (!problems.empty()) {
        m_store->addProblems(QList<ImportProblem>(problems.begin(), problems.end()));
        m_report.problems += int(problems.size());
    }
}

void ImportController::onFinished() {
    EngineJob* job = m_job.data();
    if (!job) return;
    drain();
    m_report.found = m_work->found();
    m_report.duplicates += m_work->duplicates();
    m_report.cancelled = job->outcome() == EngineJob::Outcome::Cancelled;
    if (job->outcome() == EngineJob::Outcome::Failed) m_report.failure = job->message();
    m_report.elapsedMs = job->elapsedMs();
    m_job = nullptr;
    m_work.reset();
    job->deleteLater();
    m_lastReport = m_report;
    emit finished(m_lastReport);
    if (m_job) return; // a receiver of finished started the next import already
    if (!m_pending.isEmpty())
        startNext();
    else
        emit idle();
}

} // namespace lorafleet::ui
