// MainStatusBar: the console's status line. Left: the last finished operation ("Imported 200 adapters in
// 1.2 s"). Right: the progress of the visible engine job with a Cancel button (only while one runs),
// a warning when the bank is out of date (the fleet changed since it was made), the process's resident
// memory (refreshed every 2 s) and the compute backend (GPU name, or CPU threads and why no GPU is usable).
// Thread affinity: GUI thread.
#pragma once

#include <QPointer>
#include <QStatusBar>
#include <QTimer>

class QLabel;
class QProgressBar;
class QToolButton;

namespace lorafleet::ui {

class ElidedLabel;
class EngineHost;
class EngineJob;

class MainStatusBar : public QStatusBar {
    Q_OBJECT
public:
    explicit MainStatusBar(EngineHost* host, QWidget* parent = nullptr);

    void setOperationText(const QString& text);
    QString operationText() const;
    // "" hides the out-of-date warning; else it is shown with `text` as its tooltip.
    void setBankStaleText(const QString& text);
    QString bankStaleText() const; // "" when hidden
    QString memoryText() const;
    // The job progress bar's text: "437 of 1,000 adapters" when the job names its unit
    // (EngineJob::progressUnit), else a percentage ("44%"); "" for an unknown total.
    static QString jobProgressText(qint64 done, qint64 total, const QString& unit);
    QString jobProgressBarText() const; // what the bar shows now ("" while no job runs)
    static QString
    backendSummary(); // "GPU: NVIDIA H100 (81559 MiB)" or "CPU, 2 threads - GPU unavailable: ..."

private:
    void track(EngineJob* job);
    void showJob(EngineJob* job);
    void onJobFinished();
    void updateMemory();

    EngineHost* m_host;
    ElidedLabel* m_operation = nullptr;
    QWidget* m_jobBox = nullptr;
    QLabel* m_jobLabel = nullptr;
    QProgressBar* m_jobProgress = nullptr;
    QToolButton* m_cancel = nullptr;
    QLabel* m_stale = nullptr;
    QLabel* m_memory = nullptr;
    ElidedLabel* m_backend = nullptr;
    QPointer<EngineJob> m_job;
    QTimer m_memoryTimer;
};

} // namespace lorafleet::ui
