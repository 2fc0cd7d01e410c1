// ServeCharts: the Serve tab's four live QCustomPlot charts over a ServeHistory (time since the engine
// started on x, the history's rolling window):
//   throughput: output and prompt tokens/s in the upper axis rect; completed requests/s in a strip of
//               its own below (same time axis), so the two never draw over each other;
//   latency:    TTFT and end-to-end p50/p99 in ms;
//   memory:     stacked, in MiB: weights, adapters, KV cache in use, runtime (what the process grew by
//               since Start beyond those), then the rest of the process as a thin hatched band on top
//               (kBandFraction of the axis, not to scale: the console and its libraries would otherwise
//               fill the chart); the axis fits the server's own parts. Every layer's current size, with
//               its unit, is in the legend in the app's one size format (formatBytes: "adapters
//               2.0 MiB", "KV in use 192.0 MiB of 256.0 MiB", "adapters 798.7 KiB");
//               while the newest sample has device memory (the engine serves on a GPU) the same chart
//               shows the device instead, to scale: weights, adapters, KV cache (its pools, with the
//               share in use), other used (CUDA context, workspaces, other processes) and free, which
//               add up to the device's total (GiB when the device holds more than 8 GiB);
//   adapters:   active adapters (last 2 s) and, only where a cache exists (raw folders, or a hybrid
//               bank's raw-served adapters), the cache hit rate in % on the right axis (gaps where
//               nothing was looked up).
// Legends sit between the title and the axes and wrap into as many columns as fit the chart's width,
// so no entry is ever cut off.
// Thread affinity: GUI thread.
#pragma once

#include <QWidget>

class QCPAxisRect;
class QCPTextElement;
class QCustomPlot;

namespace lorafleet::ui {

class ServeHistory;

class ServeCharts : public QWidget {
    Q_OBJECT
public:
    static constexpr double kBandFraction = 0.06; // height of the "rest of process" band / axis range

    explicit ServeCharts(QWidget* parent = nullptr);

    // Shows or hides the hit-rate line, its legend entry and the right axis of the adapters chart.
    void setCacheShown(bool shown);
    bool isCacheShown() const { return m_cacheShown; }
    // Rebuilds every series and range from `history` and queues a replot.
    void rebuild(const ServeHistory& history);

    QCustomPlot* throughputPlot() const { return m_throughput; }
    QCustomPlot* latencyPlot() const { return m_latency; }
    QCustomPlot* memoryPlot() const { return m_memory; }
    QCustomPlot* adaptersPlot() const { return m_adapters; }
    QCPAxisRect* requestsRect() const { return m_requestsRect; } // the throughput chart's lower strip
    bool showsDeviceMemory() const { return m_deviceMemory; }    // the memory chart shows the device
    QString memoryTitle() const;

protected:
    void resizeEvent(QResizeEvent* event) override;

private:
    void setupPlots();
    void fitLegends();
    void setDeviceMemoryShown(bool device, const QString& deviceName, bool gib);

    QCustomPlot* m_throughput = nullptr;
    QCustomPlot* m_latency = nullptr;
    QCustomPlot* m_memory = nullptr;
    QCustomPlot* m_adapters = nullptr;
    QCPAxisRect* m_requestsRect = nullptr;
    QCPTextElement* m_memoryTitle = nullptr;
    bool m_cacheShown = true;
    bool m_deviceMemory = false;
};

} // namespace lorafleet::ui
