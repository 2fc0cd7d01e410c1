// ErrorView: the console's Errors tab over a compressed bank (QCustomPlot):
//   - a histogram of per-adapter mean error over the data's own range, with the mean and (for a bank
//     whose cluster count was automatic) its target error as vertical lines and a legend;
//   - a layer x module heat map of mean error (QCPColorMap, colour scale over the cells' range, module
//     names on the axis, values in the cells while they fit);
//   - an error-vs-rank curve from a sweep (engine/analysis/bank_rank_sweep.hpp) run in the background
//     through the Session's EngineHost, with progress and Cancel; the bank's own error on the same
//     module sample marked at its rank (the sweep keeps the bank's clusters, so the two agree there).
// Views only draw: statistics, settings and the sweep are engine/analysis. Errors read as formatError.
// Thread affinity: GUI thread (the sweep's engine work runs on its job's worker thread and only shares
// the adapters by shared_ptr and its result by a shared_ptr written before the job ends).
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <QPointer>
#include <QWidget>

#include <memory>
#include <vector>

class QCustomPlot;
class QLabel;
class QPushButton;
class QProgressBar;
class QSpinBox;
class QStackedWidget;

namespace lorafleet::analysis {
struct layer_module_grid;
}

namespace lorafleet::ui {

class Session;
class EngineJob;

class ErrorView : public QWidget {
    Q_OBJECT
public:
    explicit ErrorView(Session* session, QWidget* parent = nullptr);
    ~ErrorView() override;

    // Null: the empty-state message ("Compress the fleet to see ..."). A new bank cancels a running
    // sweep and clears the old curve.
    void setBank(std::shared_ptr<const lorafleet::bank::compressed_bank> bank);
    const lorafleet::bank::compressed_bank* bank() const { return m_bank.get(); }
    // The bank's own target error (from its manifest) when its cluster count was automatic; NaN for a
    // fixed count (no target line then).
    double targetError() const { return m_target; }
    bool hasTarget() const;

    // The rank sweep (also the "Run sweep" / "Cancel" buttons). start does nothing without a bank, when
    // one is running, or when the fleet holds none of the bank's adapters (the status line says why).
    void startRankSweep();
    void cancelRankSweep();
    bool isSweepRunning() const;
    // (rank, mean error) of the last finished sweep, ascending rank; empty before one finished.
    const std::vector<std::pair<int, double>>& sweepPoints() const { return m_sweep; }
    // The bank's mean error over the same adapters and modules as the last finished sweep.
    double sweepBankErrorOnSample() const { return m_sweepBankOnSample; }

    // For tests and screenshots.
    QCustomPlot* histogramPlot() const { return m_histogram; }
    QCustomPlot* heatMapPlot() const { return m_heat; }
    QCustomPlot* sweepPlot() const { return m_sweepPlot; }
    bool showsEmptyState() const;
    QString sweepStatus() const; // the line under the sweep plot
    // The heat map's tooltip at `pos` (heat map plot pixels): layer, module, mean error and how many
    // (adapter, module) errors it averages; empty outside the cells.
    QString heatMapToolTip(const QPoint& pos) const;

signals:
    void sweepFinished(bool succeeded); // after the curve was updated (false: cancelled or failed)

private:
    void rebuildHistogram();
    void rebuildHeatMap();
    void rebuildSweepPlot();
    void setSweepStatus(const QString& text);

    Session* m_session;
    std::shared_ptr<const lorafleet::bank::compressed_bank> m_bank;
    double m_target = 0.0;            // NaN when the bank has no target (set by setBank)
    QString m_settingsNote;           // why the bank's settings could not be read ("" normally)
    double m_sweepBankOnSample = 0.0; // the bank's mean error on the last sweep's modules
    std::vector<std::pair<int, double>> m_sweep;
    std::shared_ptr<const analysis::layer_module_grid> m_cells; // what the heat map shows (null: nothing)
    int m_sweepModuleCount = 0;                                 // modules the last finished sweep sampled
    QPointer<EngineJob> m_job;

    QStackedWidget* m_stack = nullptr;
    QLabel* m_empty = nullptr;
    QCustomPlot* m_histogram = nullptr;
    QCustomPlot* m_heat = nullptr;
    QCustomPlot* m_sweepPlot = nullptr;
    QLabel* m_sweepStatus = nullptr;
    QPushButton* m_runSweep = nullptr;
    QPushButton* m_cancelSweep = nullptr;
    QProgressBar* m_sweepProgress = nullptr;
    QSpinBox* m_sweepModules = nullptr;
};

} // namespace lorafleet::ui
