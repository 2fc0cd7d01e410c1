// ServeController: the Serve tab's engine side, without widgets. start() loads the model and the adapters
// (the session's compressed bank, raw PEFT folders, or none) and starts a continuous-batching
// serving_engine plus the OpenAI-compatible HTTP server on 127.0.0.1 (port 0 = a free one) in a
// background EngineJob, on the device of ServeConfig::device (the engine's "auto" / "cpu" / "cuda"; cuda
// without a usable GPU fails with the engine's backend_unavailable reason) and, when ServeConfig::apiKey is
// set, with every route but /health requiring "Authorization: Bearer KEY" (the key lives in memory only,
// in the config and the HTTP server; it is never logged); stop() tears both down in another job (in-flight
// requests are cancelled, the listening socket is closed before stopped() is emitted). A built-in
// LoadGenerator submits requests straight to the engine. While running, a timer polls
// serving_engine::metrics() (a copy taken under the engine's short lock) about four times a second into a
// ServeHistory and emits sampled(). States: Stopped -> Starting -> Running -> Stopping -> Stopped (Starting
// -> Stopped on failure, with failed(reason)). Thread affinity: GUI thread; the engine, the HTTP server's
// threads and the load generator's thread only ever touch the runtime they share by shared_ptr, never this
// object.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/serve/metrics/metrics.hpp"
#include "ui/common/engine_job.hpp"
#include "ui/serve/load_generator.hpp"
#include "ui/serve/serve_history.hpp"

#include <QObject>
#include <QPointer>
#include <QStringList>
#include <QTimer>

#include <memory>
#include <optional>

namespace lorafleet::serve {
class serving_engine;
}

namespace lorafleet::ui {

class EngineHost;

// An adapter the last start left out (raw folders: unreadable, invalid or foreign to the base), and why.
struct SkippedAdapter {
    QString name;   // the folder's name ("" when the path named no adapter)
    QString folder; // the adapter folder, or the given path that held none
    QString reason; // one line (never file contents)
};

struct ServeConfig {
    enum class Source { Bank, RawFolders, BaseOnly };
    QString modelDir; // HuggingFace model folder
    Source source = Source::Bank;
    std::shared_ptr<const bank::compressed_bank> bank; // Source::Bank (copied into the engine)
    QStringList adapterFolders;                        // Source::RawFolders: adapters or folders of them
    int port = 0;                                      // 0 = any free port
    int kvCacheMiB = 64;
    int adapterCacheMiB = 256;              // raw mode's LRU cache
    int threads = 0;                        // transformer threads, 0 = all
    QString device = QStringLiteral("cpu"); // "auto", "cpu" or "cuda" (backend/device_choice.hpp)
    QString apiKey;      // "" = no key; else one token without spaces or control characters (as the CLI's)
    QString promptsFile; // "" = the bundled sonnets
};

class ServeController : public QObject {
    Q_OBJECT
public:
    enum class State { Stopped, Starting, Running, Stopping };
    Q_ENUM(State)

    // `host` may be null (jobs are then started directly, not announced in the status bar).
    explicit ServeController(EngineHost* host, QObject* parent = nullptr);
    ~ServeController() override; // tears a running engine down synchronously

    void start(const ServeConfig& config); // ignored unless Stopped; validation errors come as failed()
    void stop();                           // ignored unless Running

    // Starts (or restarts) the load generator; false with `error` set when not running or the settings
    // are refused.
    bool startLoad(const LoadSettings& settings, QString* error = nullptr);
    void stopLoad();
    bool isLoadRunning() const; // submitting, or requests of the generator still outstanding
    std::optional<LoadTally> loadTally() const;

    State state() const { return m_state; }
    int port() const;                 // 0 unless Running
    QString adapterMode() const;      // "compressed", "raw", "hybrid", "base" ("" unless Running)
    bool hasAdapterCache() const;     // raw or hybrid: adapters (some) behind the LRU cache
    QStringList adapterNames() const; // sorted
    QString modelName() const;        // the base model's served name (its folder name)
    QString device() const;           // where the forward pass runs: "cpu" or "cuda" ("" unless Running)
    QString deviceNote() const;       // how it was chosen, e.g. "cpu (auto: no usable CUDA device: ...)"
    bool requiresApiKey() const;      // the running server checks an API key
    QString lastError() const { return m_lastError; }
    // What the last successful start skipped (empty before, and for a bank or the base model).
    QList<SkippedAdapter> skippedAdapters() const { return m_skipped; }

    const ServeHistory& history() const { return m_history; }
    // The snapshot the newest sample came from (nullopt before the first sample).
    const std::optional<serve::metrics_snapshot>& lastSnapshot() const { return m_lastSnapshot; }
    serve::serving_engine* engine() const; // null unless Running; for tests and tools
    void setPollInterval(int ms) { m_poll.setInterval(ms); }
    void pollNow();      // takes one sample now (tests)
    void clearHistory(); // forgets the samples and the last snapshot (a new workspace); emits sampled()

signals:
    void stateChanged(lorafleet::ui::ServeController::State state);
    void started(int port);
    void failed(const QString& reason);
    void stopped();
    void sampled(); // a new sample is in history()
    void loadFinished();

private:
    struct Runtime;
    void setState(State s);
    void onStartFinished(EngineJob::Outcome outcome, const QString& message);
    EngineJob* startJob(const QString& title, EngineJob::Work work);

    EngineHost* m_host;
    State m_state = State::Stopped;
    std::shared_ptr<Runtime> m_runtime;
    std::shared_ptr<std::shared_ptr<Runtime>> m_pending; // written by the start job
    QPointer<EngineJob> m_job;
    QTimer m_poll;
    ServeHistory m_history;
    std::optional<serve::metrics_snapshot> m_lastSnapshot;
    bool m_loadWasRunning = false;
    QString m_lastError;
    QList<SkippedAdapter> m_skipped;
};

} // namespace lorafleet::ui
