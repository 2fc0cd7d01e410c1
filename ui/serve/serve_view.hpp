// ServeView: the console's Serve tab. Left: the server (model folder, defaulting to the bundled demo
// model; adapters from the session's compressed bank, raw PEFT folders or none; port, 0 = a free one;
// KV budget; Start/Stop; the endpoint and a copyable curl example for /v1/completions) and the built-in
// load generator (rate, adapters, duration, max tokens), then the per-adapter traffic table (requests,
// tokens, end-to-end p50/p99). Right: headline numbers and four live QCustomPlot charts over the
// controller's rolling window: throughput (tokens/s, requests/s), latency (TTFT and end-to-end p50/p99),
// memory by kind (stacked: weights, KV in use, adapters, other RSS) and active adapters with the
// adapter-cache hit rate.
// Redraws never stall the GUI: each controller sample only marks the view dirty; a 40 ms single-shot
// timer coalesces them into one rebuild of the series from the history (already plain numbers copied
// out of the engine's snapshot) and a queued replot (QCustomPlot::rpQueuedReplot).
// Thread affinity: GUI thread.
#pragma once

#include "ui/serve/load_generator.hpp"

#include <QTimer>
#include <QWidget>

class QComboBox;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;
class QTableWidget;

namespace lorafleet::ui {

class ServeController;
class Session;

class ServeView : public QWidget {
    Q_OBJECT
public:
    explicit ServeView(Session* session, QWidget* parent = nullptr);
    ~ServeView() override;

    ServeController* controller() const { return m_controller; }

    // For `lorafleet --demo --screenshot ... --tab serve`: starts the server on the demo model (the
    // session's bank when there is one, else the base model) on a free port, then the load generator
    // (demoLoadSettings()); liveDataReady() is emitted once the charts hold at least ~2 s under load.
    void startDemoLoad();
    static LoadSettings demoLoadSettings();
    bool hasLiveData() const { return m_liveDataSent; }

    void setModelDir(const QString& dir);
    QString modelDir() const;
    enum class Source { Bank, RawFolders, BaseOnly };
    void setSource(Source source);
    void setAdapterFolders(const QStringList& folders);
    void setPort(int port);
    void setLoadSettings(const LoadSettings& settings);
    LoadSettings loadSettings() const;
    QString statusText() const; // the one-line server status (the error after a failed start)
    QString curlExample() const;

    QCustomPlot* throughputPlot() const { return m_throughput; }
    QCustomPlot* latencyPlot() const { return m_latency; }
    QCustomPlot* memoryPlot() const { return m_memory; }
    QCustomPlot* adaptersPlot() const { return m_adapters; }
    QTableWidget* adapterTable() const { return m_table; }
    void refreshNow(); // applies pending samples at once (tests, screenshots)

public slots:
    void startServer();
    void stopServer();
    void startLoad();
    void stopLoad();

signals:
    void liveDataReady();

private:
    QWidget* buildServerBox();
    QWidget* buildLoadBox();
    QWidget* buildTiles();
    void setupPlots();
    void updateButtons();
    void updateSourceText();
    void onStateChanged();
    void onSampled();
    void rebuild();
    void rebuildTable();
    void updateTiles();
    void setStatus(const QString& text, bool error = false);

    Session* m_session;
    ServeController* m_controller;
    QTimer m_replot;
    bool m_demoPending = false;
    bool m_liveDataSent = false;
    double m_loadStartedAt = -1; // sample time when the current load began (for liveDataReady)

    QLineEdit* m_model = nullptr;
    QComboBox* m_source = nullptr;
    QLineEdit* m_folders = nullptr;
    QPushButton* m_addFolder = nullptr;
    QSpinBox* m_port = nullptr;
    QSpinBox* m_kv = nullptr;
    QPushButton* m_start = nullptr;
    QPushButton* m_stop = nullptr;
    QLabel* m_status = nullptr;
    QLabel* m_endpoint = nullptr;
    QPlainTextEdit* m_curl = nullptr;
    QPushButton* m_copyCurl = nullptr;

    QDoubleSpinBox* m_rate = nullptr;
    QSpinBox* m_loadAdapters = nullptr;
    QSpinBox* m_duration = nullptr;
    QSpinBox* m_maxTokens = nullptr;
    QPushButton* m_startLoad = nullptr;
    QPushButton* m_stopLoad = nullptr;
    QLabel* m_tally = nullptr;

    QLabel* m_tileTokens = nullptr;
    QLabel* m_tileRequests = nullptr;
    QLabel* m_tileBatch = nullptr;
    QLabel* m_tileCompleted = nullptr;
    QLabel* m_tileLatency = nullptr;
    QLabel* m_tileMemory = nullptr;

    QCustomPlot* m_throughput = nullptr;
    QCustomPlot* m_latency = nullptr;
    QCustomPlot* m_memory = nullptr;
    QCustomPlot* m_adapters = nullptr;
    QTableWidget* m_table = nullptr;
};

} // namespace lorafleet::ui
