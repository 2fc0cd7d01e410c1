// ExportController: File > Export Bank / Export PEFT Adapters / Export Error Report without the dialogs.
// Each export runs on an EngineJob (status-bar progress, cancellable) over the session's current bank,
// shared by shared_ptr so a new compression meanwhile does not disturb it:
//   - bank: write_bank (atomic for the whole folder; replaces only an existing bank); a copy: the
//     workspace keeps its own bank (NAME.bank, written by Save), so a later Save never touches an export;
//   - PEFT: export_peft_adapters for all adapters or the named ones (lora_A = Vt_c, lora_B = U_c S_i,
//     F32, scale 1), one folder per adapter under the chosen folder;
//   - error report: CSV or JSON by the file's suffix (error_report.hpp), atomic.
// One export at a time. Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "ui/common/engine_job.hpp"

#include <QObject>
#include <QPointer>
#include <QStringList>

namespace lorafleet::ui {

class Session;

class ExportController : public QObject {
    Q_OBJECT
public:
    explicit ExportController(Session* session, QObject* parent = nullptr);
    ~ExportController() override; // cancels and joins a running export

    // Each returns false (with `error`) when there is no bank or an export is running; else the export
    // started and finished() follows.
    bool exportBank(const QString& dir, bool overwrite, QString* error = nullptr);
    bool exportPeft(const QString& dir, const QStringList& adapters, bool overwrite,
                    QString* error = nullptr);
    bool exportReport(const QString& path, QString* error = nullptr);
    bool isRunning() const { return !m_job.isNull(); }

signals:
    void finished(bool ok, const QString& message);

private:
    bool begin(QString* error);
    void watch(EngineJob* job, const QString& doneText);

    Session* m_session;
    QPointer<EngineJob> m_job;
};

} // namespace lorafleet::ui
