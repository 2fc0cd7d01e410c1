// PlaygroundRunner: the Playground's engine side, without widgets. run() generates one completion for the
// same prompt in up to three columns at once — the adapter raw (its PEFT folder behind the LRU cache),
// compressed (the workspace's bank) and the base model — through the serving engine the Serve tab uses
// (engine/serve/session/serving_session.hpp: one served_model, a serving_engine per column), in-process,
// no HTTP. Each column streams: every piece of text the engine hands its on_text callback becomes one
// textAppended() on the GUI thread (a queued call), in order, before that column's columnFinished().
// The model and the engines are kept between runs (keyed by model folder, bank and adapter folder), so a
// second run only generates. One run at a time; cancel() cancels its requests.
//
// Threading: run() starts an EngineJob (quiet) whose worker loads what is missing, submits the requests
// and waits for their on_done; the engines' threads call on_text / on_done, which only post queued calls
// to this object. The worker and the engines touch the cached runtime only through a shared_ptr and
// only while a job runs (one at a time). The destructor cancels and joins a running job first, so no
// callback of a run outlives this object; the engines are shut down with the runtime.
// Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "ui/common/engine_job.hpp"

#include <QObject>
#include <QPointer>
#include <QString>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace lorafleet::ui {

class EngineHost;

enum class PlaygroundColumn { Raw = 0, Compressed = 1, Base = 2 };
constexpr int kPlaygroundColumns = 3;

struct PlaygroundRequest {
    QString modelDir;
    QString adapter;   // the adapter's name (what the bank calls it); "" = base model only
    QString rawFolder; // its PEFT folder; "" = no raw column
    std::shared_ptr<const bank::compressed_bank> bank; // null = no compressed column
    QString prompt;                                    // not empty
    int maxTokens = 64;
    double temperature = 0; // 0 = greedy
    std::uint64_t seed = 1; // the same for every column, so sampled outputs are comparable too
    int threads = 1;        // transformer threads per engine
};

struct PlaygroundOutput {
    bool requested = false;  // the column was part of the run
    bool done = false;       // finished, failed or cancelled
    QString text;            // streamed so far; the final text once done
    QString error;           // why the column failed (or "cancelled")
    std::vector<int> tokens; // generated ids, once done
    int pieces = 0;          // textAppended calls so far
    double seconds = 0;      // submit -> done (engine's total), once done
    double tokensPerS() const { return seconds > 0 ? double(tokens.size()) / seconds : 0; }
};

class PlaygroundRunner : public QObject {
    Q_OBJECT
public:
    explicit PlaygroundRunner(EngineHost* host, QObject* parent = nullptr);
    ~PlaygroundRunner() override;

    // Starts a run; false (with `error`) while one runs or when the request is unusable (no model
    // folder, empty prompt, max tokens < 1). Columns that cannot run (no folder, no bank, the bank lacks
    // the adapter) are simply not requested: the caller says why.
    bool run(const PlaygroundRequest& request, QString* error = nullptr);
    void cancel();
    bool isRunning() const { return !m_job.isNull(); }
    const PlaygroundOutput& output(PlaygroundColumn column) const { return m_out[std::size_t(column)]; }
    double elapsedSeconds() const; // since the run started

signals:
    void textAppended(lorafleet::ui::PlaygroundColumn column, const QString& piece);
    void columnFinished(lorafleet::ui::PlaygroundColumn column);
    // After every requested column finished (or the setup failed: `ok` false, `message` why).
    void finished(bool ok, const QString& message);

private:
    struct Runtime;
    void onPiece(int column, const QString& piece);
    void onDone(int column, bool ok, const QString& text, std::vector<int> tokens, double seconds,
                const QString& error);

    EngineHost* m_host;
    std::shared_ptr<Runtime> m_runtime;
    QPointer<EngineJob> m_job;
    std::array<PlaygroundOutput, kPlaygroundColumns> m_out;
    qint64 m_startedMs = 0;
};

} // namespace lorafleet::ui
