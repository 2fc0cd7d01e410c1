// QualityView: the console's Quality tab (issue 18) — how closely each compressed adapter reproduces its
// raw original, from the bank's stored evaluation (its manifest's optional "quality" section).
// Left: a scatter of agreement (token agreement or exact match, a selector) against reconstruction error
// (the bank adapter's mean error), one point per evaluated adapter, coloured by cluster with the Clusters
// tab's colours (ClusterView::clusterColor), one QCPGraph per cluster. Right: the evaluated adapters, worst
// first (lowest agreement; ties: larger KL first, then name), with cluster, agreement, exact match, error,
// KL(raw || compressed) and first divergence, and a "Serve raw" checkbox per adapter: ticking or clearing
// it rewrites the bank's raw list (format 2, hybrid serving) in the bank folder through the engine, on an
// EngineJob, and the session then holds the bank with that list (so the Serve tab serves those adapters
// from their PEFT files). "Try in Playground" asks for the current adapter to be opened in the Playground.
// Without a stored evaluation, "Evaluate" runs one (quality_work.hpp: the workspace's adapters as raw
// sources, the chosen model, the first N bundled prompts x M tokens, 8 x 16 by default) as a cancellable
// EngineJob with progress, stores it in the bank and shows it; a stored one is shown without recomputing
// ("Re-evaluate" runs again). The results live in the bank folder, so the bank must be saved (the
// workspace saved) first; the view says so.
// Selection: points and table rows are linked both ways; a user selection emits adaptersSelected(names);
// selectAdapters(names) (the Fleet table's selection) highlights points and rows and emits nothing.
// Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <QPointer>
#include <QStringList>
#include <QVector>
#include <QWidget>

#include <functional>
#include <memory>
#include <vector>

class QComboBox;
class QCustomPlot;
class QLabel;
class QPushButton;
class QSpinBox;
class QStackedWidget;
class QTableWidget;

namespace lorafleet::ui {

class EngineJob;
class Session;

class QualityView : public QWidget {
    Q_OBJECT
public:
    enum class Metric { TokenAgreement = 0, ExactMatch = 1 };
    // Columns of worstTable().
    enum Column {
        NameColumn,
        ClusterColumn,
        AgreementColumn,
        ExactColumn,
        ErrorColumn,
        KlColumn,
        FirstDivergenceColumn,
        ServeRawColumn,
        ColumnCount
    };

    explicit QualityView(Session* session, QWidget* parent = nullptr);
    ~QualityView() override;

    // The model folder an evaluation runs (default: the bundled demo model); asked when Evaluate starts.
    void setModelDirProvider(std::function<QString()> provider) { m_modelDir = std::move(provider); }
    void setPromptsFile(const QString& path) { m_promptsFile = path; } // default: the bundled sonnets
    void setEvaluationSize(int prompts, int maxTokens);

    Metric metric() const;
    void setMetric(Metric metric);

    // One plotted point, read back from the plot's graphs (for tests and tooltips).
    struct PlotPoint {
        QString name;
        int cluster = 0;
        double error = 0;     // x
        double agreement = 0; // y (the current metric)
    };
    QVector<PlotPoint> plottedPoints() const;
    QString adapterAt(const QPoint& pos) const;    // the point under `pos` (plot pixels, 8 px), "" when none
    QString toolTipFor(const QString& name) const; // the point's tooltip: name, cluster and its numbers
    QStringList selectedAdapters() const;          // the highlighted points, by name (sorted)
    QStringList worstOrder() const;                // the table's adapters, top to bottom
    QStringList rawAdapters() const;               // the bank's raw list as the view shows it
    bool hasEvaluation() const;                    // the bank has a quality section with results
    bool isBusy() const;                           // an evaluation or a raw-list write runs
    QString statusText() const;

    QCustomPlot* plot() const { return m_plot; }
    QTableWidget* worstTable() const { return m_table; }
    QPushButton* evaluateButton() const { return m_evaluate; }
    QPushButton* cancelButton() const { return m_cancel; }
    QPushButton* tryButton() const { return m_try; }

public slots:
    void refresh();                                // rebuilds everything from the session's bank
    void selectAdapters(const QStringList& names); // highlights; emits nothing
    bool evaluate();                               // false (status says why) when it cannot start
    void cancel();
    // Serve `name` raw or compressed from now on: rewrites the bank's raw list on a job; false when it
    // cannot start (no saved bank, busy, unknown adapter).
    bool setServeRaw(const QString& name, bool raw);

signals:
    void adaptersSelected(const QStringList& names); // a selection the operator made here
    void tryInPlayground(const QString& name);
    void evaluationFinished(bool ok, const QString& message);
    void rawListStored(bool ok, const QString& message);

private:
    QString bankDir() const; // the saved bank folder, "" when the bank is unsaved or absent
    double metricOf(const bank::adapter_quality& q) const;
    void rebuildPlot();
    void rebuildTable();
    void applySelection(const QStringList& names); // points and rows, no signal
    void onPlotSelectionChangedByUser();
    void onTableSelectionChanged();
    void onTableItemChanged(int row, int column);
    void onTry();
    void updateButtons();
    void setStatus(const QString& text);

    Session* m_session;
    std::shared_ptr<const bank::compressed_bank> m_bank; // what the view shows
    std::function<QString()> m_modelDir;
    QString m_promptsFile;
    QStackedWidget* m_stack = nullptr;
    QLabel* m_empty = nullptr;
    QComboBox* m_metric = nullptr;
    QSpinBox* m_prompts = nullptr;
    QSpinBox* m_maxTokens = nullptr;
    QPushButton* m_evaluate = nullptr;
    QPushButton* m_cancel = nullptr;
    QPushButton* m_try = nullptr;
    QLabel* m_caption = nullptr;
    QLabel* m_status = nullptr;
    QCustomPlot* m_plot = nullptr;
    QTableWidget* m_table = nullptr;
    std::vector<std::vector<QString>> m_graphNames; // [graph] -> names in the graph's data order
    QPointer<EngineJob> m_job;
    bool m_applying = false; // a programmatic selection / table rebuild: swallow signals
};

} // namespace lorafleet::ui
