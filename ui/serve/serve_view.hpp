// ServeView: the console's Serve tab. Left: the server (model folder, defaulting to the bundled demo
// model; adapters: the workspace's compressed bank, the workspace's imported adapters as raw PEFT folders,
// other PEFT folders typed or browsed, or none; which of the workspace's adapters: all, the Fleet
// table's selection or one cluster of the bank; the device: Automatic / CPU / GPU with its name and free
// memory, or disabled with why there is none (DeviceCombo); port, 0 = a free one; transformer threads,
// 0 = all; KV cache and raw-adapter cache budgets; an optional API key; Start/Stop; the adapters the start
// skipped, with reasons; the endpoint and a copyable curl example for /v1/completions) and the built-in load
// generator (rate, adapters — at most the ones served, the box says how many —, duration, max tokens; its
// tally explains dropped arrivals), then the per-adapter traffic table (requests, tokens, end-to-end
// p50/p99). Right: headline number tiles (shown while the server runs, "–" otherwise) and the live charts
// (ServeCharts) over the controller's rolling window. Actions: startAction() (F5) and stopAction()
// (Shift+F5), for a menu and the shortcuts page. Redraws never stall the GUI: each controller sample only
// marks the view dirty; a 40 ms single-shot timer coalesces them into one rebuild of the series from the
// history (already plain numbers copied out of the engine's snapshot) and a queued replot
// (QCustomPlot::rpQueuedReplot). Settings: device, threads and the two cache budgets are kept in QSettings
// ("serve/...") and restored by the next view. The API key is never stored (not in QSettings, not in the
// workspace file) nor logged: it lives in the masked field and, while serving, in the HTTP server; "Copy"
// puts it on the clipboard, "New" makes a random one. The curl example names it as $LORAFLEET_API_KEY, never
// in clear. Thread affinity: GUI thread.
#pragma once

#include "ui/serve/adapter_choice.hpp"
#include "ui/serve/load_generator.hpp"

#include <QTimer>
#include <QWidget>

#include <functional>

class QAction;
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

class DeviceCombo;
class ElidedLabel;
class ServeCharts;
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
    // Bank: the workspace's bank; WorkspaceAdapters: the workspace's imported adapters' PEFT folders
    // (raw, behind the LRU cache); RawFolders: folders typed in the Folders box; BaseOnly: no adapter.
    enum class Source { Bank, RawFolders, BaseOnly, WorkspaceAdapters };
    void setSource(Source source);
    Source source() const;
    void setAdapterFolders(const QStringList& folders);
    // Which workspace adapters Bank and WorkspaceAdapters serve. `cluster` for Subset::Cluster.
    void setSubset(AdapterChoice::Subset subset, int cluster = -1);
    // The Fleet table's selection (adapter names), asked for when the choice is "selection".
    void setSelectionProvider(std::function<QStringList()> provider);
    void setPort(int port);
    // The device ("auto", "cpu", "cuda"; anything else = auto), threads (0 = all), KV cache and adapter
    // cache budgets (MiB) and the API key ("" = none) the next start uses. Setters clamp to the boxes'
    // ranges; the first four are remembered in QSettings.
    void setDevice(const QString& device);
    QString device() const;
    void setThreads(int threads);
    int threads() const;
    void setKvCacheMiB(int mib);
    int kvCacheMiB() const;
    void setAdapterCacheMiB(int mib);
    int adapterCacheMiB() const;
    void setApiKey(const QString& key);
    QString apiKey() const;
    DeviceCombo* deviceCombo() const { return m_device; }
    QString deviceText() const;                         // the line under the device choice
    void setLoadSettings(const LoadSettings& settings); // adapters clamped to the served ones while running
    LoadSettings loadSettings() const;
    QString statusText() const; // the one-line server status (the error after a failed start)
    QString curlExample() const;
    QString skippedText() const;   // "" when the last start skipped nothing
    QString loadNote() const;      // beside the load generator's Adapters box, e.g. "of 12 served"
    QString tallyText() const;     // the load generator's tally line
    QString tallyToolTip() const;  // what "dropped" means
    QStringList tileTexts() const; // the number tiles, left to right

    QAction* startAction() const { return m_startAction; }
    QAction* stopAction() const { return m_stopAction; }

    ServeCharts* charts() const { return m_charts; }
    QCustomPlot* throughputPlot() const;
    QCustomPlot* latencyPlot() const;
    QCustomPlot* memoryPlot() const;
    QCustomPlot* adaptersPlot() const;
    QTableWidget* adapterTable() const { return m_table; }
    void refreshNow(); // applies pending samples at once (tests, screenshots)

public slots:
    void startServer();
    void stopServer();
    void startLoad();
    void stopLoad();
    // File > New Workspace: stops a running server (it serves the old workspace's adapters) and clears
    // the charts, the traffic table, the tiles, the tally and the skipped list.
    void resetForNewWorkspace();
    // Rebuilds the adapter source and subset texts (counts of the bank, the fleet, the selection).
    void refreshAdapterChoices();

signals:
    void liveDataReady();

protected:
    void showEvent(QShowEvent* event) override;

private:
    QWidget* buildServerBox();
    QWidget* buildLoadBox();
    QWidget* buildTiles();
    void updateButtons();
    void onStateChanged();
    void onSampled();
    void rebuild();
    void rebuildTable();
    void updateTiles();
    void updateLoadLimit();
    void showSkipped();
    void setStatus(const QString& text, bool error = false);
    AdapterChoice currentChoice() const;
    void restoreSettings();
    void saveSettings() const;
    QString deviceStatus() const; // "CPU (no usable CUDA device: ...)" or "GPU NVIDIA H200" while running

    Session* m_session;
    ServeController* m_controller;
    std::function<QStringList()> m_selection;
    QTimer m_replot;
    bool m_demoPending = false;
    bool m_liveDataSent = false;
    double m_loadStartedAt = -1; // sample time when the current load began (for liveDataReady)
    int m_maxInFlight = LoadSettings{}.max_in_flight;
    int m_wantedLoadAdapters = LoadSettings{}.adapters; // what was asked for before clamping

    QLineEdit* m_model = nullptr;
    QComboBox* m_source = nullptr;
    QComboBox* m_subset = nullptr;
    QLineEdit* m_folders = nullptr;
    QPushButton* m_addFolder = nullptr;
    DeviceCombo* m_device = nullptr;
    ElidedLabel* m_deviceInfo = nullptr;
    QSpinBox* m_port = nullptr;
    QSpinBox* m_threads = nullptr;
    QSpinBox* m_kv = nullptr;
    QSpinBox* m_adapterCache = nullptr;
    QLineEdit* m_apiKey = nullptr;
    QPushButton* m_copyKey = nullptr;
    QPushButton* m_newKey = nullptr;
    bool m_restoring = false; // restoreSettings() is filling the boxes: nothing to save
    QPushButton* m_start = nullptr;
    QPushButton* m_stop = nullptr;
    QAction* m_startAction = nullptr;
    QAction* m_stopAction = nullptr;
    QLabel* m_status = nullptr;
    QLabel* m_skipped = nullptr;
    QLabel* m_endpoint = nullptr;
    QPlainTextEdit* m_curl = nullptr;
    QPushButton* m_copyCurl = nullptr;

    QDoubleSpinBox* m_rate = nullptr;
    QSpinBox* m_loadAdapters = nullptr;
    QLabel* m_loadNote = nullptr;
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

    ServeCharts* m_charts = nullptr;
    QTableWidget* m_table = nullptr;
};

} // namespace lorafleet::ui
