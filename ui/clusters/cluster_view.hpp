// ClusterView: the console's Clusters tab. A 2-D map of the bank's adapters (engine/analysis/cluster_map.hpp:
// PCA of their normalized cores), one scatter graph per cluster in a stable qualitative palette, with a hover
// tooltip (name, cluster, mean error), click and rectangle selection; beside it a bar chart of cluster
// sizes where clicking a bar selects that cluster's adapters. One QCPGraph per cluster (never one per
// point) keeps it smooth with thousands of adapters.
//
// Selection contract: an operator's click / box / bar click emits adaptersSelected(names); the public
// slot selectAdapters(names) highlights those points and emits nothing (no echo between the table and
// the map). Names not in the bank are ignored.
// Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <QStringList>
#include <QWidget>

#include <memory>
#include <vector>

class QCPGraph;
class QCustomPlot;
class QLabel;
class QStackedWidget;

namespace lorafleet::ui {

class Session;

class ClusterView : public QWidget {
    Q_OBJECT
public:
    explicit ClusterView(Session* session, QWidget* parent = nullptr);
    ~ClusterView() override;

    // Null: the empty-state message ("Compress the fleet to see ...").
    void setBank(std::shared_ptr<const lorafleet::bank::compressed_bank> bank);
    const lorafleet::bank::compressed_bank* bank() const { return m_bank.get(); }

    QStringList selectedAdapters() const; // in bank order
    // For tests and screenshots.
    QCustomPlot* mapPlot() const { return m_map; }
    QCustomPlot* sizePlot() const { return m_sizes; }
    bool showsEmptyState() const;
    // The graph of cluster c on the map (nullptr when no bank or c is out of range).
    QCPGraph* clusterGraph(int cluster) const;
    // Points of the map, [adapter] -> (x, y); empty without a bank.
    const std::vector<std::pair<double, double>>& points() const { return m_points; }
    // The adapter drawn nearest to `pos` (map plot pixels) within `maxPixels`, or -1; and its tooltip.
    int adapterAt(const QPoint& pos, double maxPixels = 8.0) const;
    QString toolTipText(int adapter) const;

    // The colour of cluster c: Tableau 10, then golden-ratio hues; distinct for every c (no cycling),
    // the same c -> the same colour.
    static QColor clusterColor(int cluster);
    QString captionText() const; // the plain-language line above the plots

public slots:
    void selectAdapters(const QStringList& names);

signals:
    void adaptersSelected(const QStringList& names);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void rebuild();
    void resetMapRange();
    void applySelection(const std::vector<int>& adapters); // highlights, no signal
    void onMapSelectionChangedByUser();
    void onSizeBarClicked(int cluster);
    void emitSelection(const std::vector<int>& adapters);
    void showTooltipAt(const QPoint& pos);

    Session* m_session;
    std::shared_ptr<const lorafleet::bank::compressed_bank> m_bank;
    std::vector<std::pair<double, double>> m_points; // [adapter]
    // Per cluster, the adapter index of every data point of its graph, in the graph's key order.
    std::vector<std::vector<int>> m_graphAdapters;
    QStackedWidget* m_stack = nullptr;
    QLabel* m_empty = nullptr;
    QLabel* m_caption = nullptr;
    QCustomPlot* m_map = nullptr;
    QCustomPlot* m_sizes = nullptr;
    bool m_applying = false; // selectAdapters in progress: swallow selection signals
};

} // namespace lorafleet::ui
