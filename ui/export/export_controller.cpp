// ExportController (see export_controller.hpp).
#include "ui/export/export_controller.hpp"

#include "engine/bank/bank_format.hpp"
#include "engine/bank/peft_export.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/text_format.hpp"
#include "ui/export/error_report.hpp"
#include "ui/workspace/session.hpp"

#include <memory>

namespace lorafleet::ui {

ExportController::ExportController(Session* session, QObject* parent) : QObject(parent), m_session(session) {}

ExportController::~ExportController() {
    delete m_job.data();
}

bool ExportController::begin(QString* error) {
    if (!m_session->bank()) {
        if (error) *error = QStringLiteral("there is no bank yet: compress the fleet first");
        return false;
    }
    if (isRunning()) {
        if (error) *error = QStringLiteral("an export is already running");
        return false;
    }
    return true;
}

bool ExportController::exportBank(const QString& dir, bool overwrite, QString* error) {
    if (!begin(error)) return false;
    const auto current = m_session->bank();
    const std::string path = dir.toStdString();
    watch(m_session->host()->start(
              QStringLiteral("Exporting bank"),
              [current, path, overwrite](JobContext& ctx) {
                  ctx.setStage(QStringLiteral("Writing bank"));
                  bank::write_bank(path, *current, {io::dtype::F16, overwrite});
              },
              this),
          QStringLiteral("Bank written to %1").arg(dir));
    return true;
}

bool ExportController::exportPeft(const QString& dir, const QStringList& adapters, bool overwrite,
                                  QString* error) {
    if (!begin(error)) return false;
    const auto current = m_session->bank();
    const std::string path = dir.toStdString();
    bank::peft_export_options options;
    for (const QString& name : adapters)
        options.adapters.push_back(name.toStdString());
    options.overwrite = overwrite;
    const qsizetype count = adapters.isEmpty() ? qsizetype(current->adapters.size()) : adapters.size();
    watch(m_session->host()->start(
              QStringLiteral("Exporting PEFT adapters"),
              [current, path, options](JobContext& ctx) mutable {
                  ctx.setStage(QStringLiteral("Writing PEFT adapters"));
                  options.progress = [&ctx](std::size_t done, std::size_t total) {
                      ctx.setProgress(qint64(done), qint64(total));
                      return !ctx.isCancelled();
                  };
                  bank::export_peft_adapters(*current, path, options);
              },
              this),
          QStringLiteral("%1 written to %2").arg(plural(count, "PEFT adapter", "PEFT adapters"), dir));
    return true;
}

bool ExportController::exportReport(const QString& path, QString* error) {
    if (!begin(error)) return false;
    const auto current = m_session->bank();
    const std::string target = path.toStdString();
    watch(m_session->host()->start(
              QStringLiteral("Exporting error report"),
              [current, target](JobContext&) { writeErrorReport(*current, target); }, this),
          QStringLiteral("Error report written to %1").arg(path));
    return true;
}

void ExportController::watch(EngineJob* job, const QString& doneText) {
    m_job = job;
    connect(job, &EngineJob::finished, this,
            [this, job, doneText](EngineJob::Outcome outcome, const QString& message) {
                job->deleteLater();
                m_job = nullptr;
                if (outcome == EngineJob::Outcome::Succeeded) {
                    emit finished(true, doneText);
                } else {
                    emit finished(false, outcome == EngineJob::Outcome::Cancelled
                                             ? QStringLiteral("Export cancelled")
                                             : QStringLiteral("Export failed: %1").arg(message));
                }
            });
}

} // namespace lorafleet::ui
