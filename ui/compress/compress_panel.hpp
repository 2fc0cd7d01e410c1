// CompressPanel: the console's Compress tab. Left, the settings (method JD-Full / JD-Diag, joint rank,
// clusters fixed or automatic with a target error, normalization, device auto / CPU / GPU with the GPU's
// name and memory or why it is unavailable, seed) and Run / Cancel; right, the running job's progress
// (bar, stage, current module, ETA) and the result of the current bank (original vs compressed bytes
// and ratio, clusters, mean / max error, seconds, device), with a warning when the fleet changed since
// the bank was made ("out of date: N adapters added, M removed since"). Run is disabled while an import
// runs (the fleet is still changing). Under the settings, the estimate of the run they describe
// (engine/analysis/compress_estimate.hpp): the bank's size (exact for a fixed cluster count), peak
// memory, and time from this machine's measured speed (measured once per device, one thread, in the
// background on first show once the session is idle, cached in QSettings "compress/speed-v3/<device>"), and a
// warning when the rank is at or above the adapters' own rank. The widgets mirror the workspace's
// "compression" object: an edit writes it (a document change), a new or opened workspace refreshes the
// widgets. Runs go through the session's CompressController. Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "ui/common/engine_job.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/compress/compress_settings.hpp"

#include <QWidget>

class QButtonGroup;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QRadioButton;
class QSpinBox;

namespace lorafleet::ui {

class Session;

class CompressPanel : public QWidget {
    Q_OBJECT
public:
    explicit CompressPanel(Session* session, QWidget* parent = nullptr);

    CompressSettings settings() const; // as the widgets show them
    void setSettings(const CompressSettings& settings);

    // For tests and the window's actions.
    QPushButton* runButton() const { return m_run; }
    QPushButton* cancelButton() const { return m_cancel; }
    QProgressBar* progressBar() const { return m_progress; }
    QString resultText() const;      // the result box's text, one line per row ("" without a bank)
    QString deviceText() const;      // the device line ("GPU: ..." or why none)
    QString staleText() const;       // the out-of-date warning ("" when the bank is current or absent)
    QString estimateText() const;    // the estimate box, one line per row ("" for an empty fleet)
    QString rankWarningText() const; // "" when the rank is below the adapters' rank
    // Work units per second for the estimate's time (<= 0: unknown); set by the background measurement,
    // or by tests. Not persisted by this call.
    void setMachineSpeed(double unitsPerSecond);
    double machineSpeed() const { return m_speed; }

public slots:
    void run();

private:
    void onWidgetEdited();
    void onWorkspaceChanged();
    void onProgress(const CompressController::Progress& progress);
    void onStarted();
    void onFinished(EngineJob::Outcome outcome, const QString& message);
    void updateResult();
    void updateEnabled();
    void updateStale();
    void updateEstimate();
    void measureSpeedIfNeeded();

protected:
    void showEvent(QShowEvent* event) override;

private:
    Session* m_session;
    bool m_updating = false; // widgets being set from the workspace: no write-back
    const bank::compressed_bank* m_summaryBank = nullptr; // the bank the controller's summary describes

    QComboBox* m_method = nullptr;
    QSpinBox* m_rank = nullptr;
    QRadioButton* m_fixed = nullptr;
    QRadioButton* m_auto = nullptr;
    QSpinBox* m_clusters = nullptr;
    QDoubleSpinBox* m_target = nullptr;
    QComboBox* m_normalize = nullptr;
    QComboBox* m_device = nullptr;
    QLabel* m_deviceInfo = nullptr;
    QLineEdit* m_seed = nullptr;
    QPushButton* m_run = nullptr;
    QPushButton* m_cancel = nullptr;
    QProgressBar* m_progress = nullptr;
    QLabel* m_stage = nullptr;
    QLabel* m_module = nullptr;
    QLabel* m_eta = nullptr;
    QLabel* m_status = nullptr;
    QLabel* m_result = nullptr;
    QLabel* m_stale = nullptr;
    QLabel* m_estimate = nullptr;
    QLabel* m_rankWarning = nullptr;
    double m_speed = 0;    // work units per second of the chosen device (0: unknown)
    QString m_speedDevice; // the device m_speed belongs to
    bool m_measuring = false;
};

} // namespace lorafleet::ui
