// ErrorView: the console's Errors tab over a compressed bank (QCustomPlot):
//   - a histogram of per-adapter mean error with a vertical target-error line and a legend;
//   - a layer x module heat map of mean error (QCPColorMap, colour scale, module names on the axis);
//   - an error-vs-rank curve from a quick sweep (engine/compress/rank_sweep.hpp) run in the background
//   through the
//     Session's EngineHost, with progress and Cancel, the bank's current rank marked.
// The statistics come from error_stats.hpp (no widgets). The sweep re-reads the fleet's adapters from
// the Session's FleetStore (those named in the bank), on a seeded sample of modules.
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

namespace lorafleet::ui {

class Session;
class EngineJob;
struct LayerModuleErrors;

class ErrorView : public QWidget {
    Q_OBJECT
public:
    explicit ErrorView(Session* session, QWidget* parent = nullptr);
    ~ErrorView() override;

    // Null: the empty-state message ("Compress the fleet to see ..."). A new bank cancels a running
    // sweep and clears the old curve.
    void setBank(std::shared_ptr<const lorafleet::bank::compressed_bank> bank);
    const lorafleet::bank::compressed_bank* bank() const { return m_bank.get(); }
    void setTargetError(double target); // relative squared error, the histogram's vertical line
    double targetError() const { return m_target; }

    // The rank sweep (also the "Run sweep" / "Cancel" buttons). start does nothing without a bank, when
    // one is running, or when the fleet holds none of the bank's adapters (the status line says why).
    void startRankSweep();
    void cancelRankSweep();
    bool isSweepRunning() const;
    // (rank, mean error) of the last finished sweep, ascending rank; empty before one finished.
    const std::vector<std::pair<int, double>>& sweepPoints() const { return m_sweep; }

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
    void updateTargetLine();
    void setSweepStatus(const QString& text);

    Session* m_session;
    std::shared_ptr<const lorafleet::bank::compressed_bank> m_bank;
    double m_target = 0.6;
    std::vector<std::pair<int, double>> m_sweep;
    std::shared_ptr<const LayerModuleErrors> m_cells; // what the heat map shows (null: nothing)
    int m_sweepModuleCount = 0;                       // modules the last finished sweep sampled
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
