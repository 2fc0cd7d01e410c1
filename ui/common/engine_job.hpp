// EngineJob: runs one piece of engine work (a callable taking a JobContext) on its own worker thread and
// reports back on the GUI thread. Progress is written by the worker into lock-free counters of the
// shared JobContext and polled by a 50 ms GUI timer, so a worker that reports a million steps costs the
// GUI at most 20 signals a second (coalescing is structural, not a convention). Owners that produce
// results drain their own thread-safe queues (see BatchQueue) on tick().
//
// Lifetime (RAII): the job owns its QThread; destroying the job requests cancellation and joins the
// thread, so the work callable must only touch state it shares by value or shared_ptr, never the GUI
// objects. Exceptions thrown by the work become the outcome: lorafleet::cancelled_error (or a cancel
// request seen when the work returns) -> Cancelled, any other exception -> Failed with its one-line text.
//
// Thread affinity: EngineJob lives on the GUI thread (all its signals are emitted there); JobContext is
// shared between the worker (writer) and the GUI thread (reader) and is thread-safe.
#pragma once

#include <QMutex>
#include <QObject>
#include <QString>
#include <QTimer>

#include <atomic>
#include <functional>
#include <memory>

class QThread;

namespace lorafleet::ui {

// The worker's side of a job. Any thread.
class JobContext {
public:
    bool isCancelled() const noexcept { return m_cancelled.load(std::memory_order_relaxed); }
    void requestCancel() noexcept { m_cancelled.store(true, std::memory_order_relaxed); }
    // Throws lorafleet::cancelled_error when cancellation was requested; call between units of work.
    void throwIfCancelled() const;

    // `total` 0 means "unknown" (a busy indicator).
    void setProgress(qint64 done, qint64 total) noexcept;
    void setStage(const QString& text); // e.g. "Searching folders"; resets nothing else

    struct Snapshot {
        qint64 done = 0;
        qint64 total = 0;
        QString stage;
        quint64 version = 0; // changes whenever anything above changed
    };
    Snapshot snapshot() const;

private:
    std::atomic<bool> m_cancelled{false};
    std::atomic<qint64> m_done{0};
    std::atomic<qint64> m_total{0};
    std::atomic<quint64> m_version{0};
    mutable QMutex m_stageMutex;
    QString m_stage;
};

class EngineJob : public QObject {
    Q_OBJECT
public:
    enum class Outcome { Succeeded, Failed, Cancelled };
    Q_ENUM(Outcome)
    using Work = std::function<void(JobContext&)>;

    EngineJob(QString title, Work work, QObject* parent = nullptr);
    ~EngineJob() override; // cancels and joins

    void start(); // once
    void cancel();
    bool isRunning() const { return m_running; }
    bool isFinished() const { return m_finished; }
    const QString& title() const { return m_title; }
    // What progress counts, plural ("adapters"): the status bar then reads "437 of 1,000 adapters";
    // empty (the default) means done / total is a fraction shown as a percentage. GUI thread.
    void setProgressUnit(const QString& unit) { m_progressUnit = unit; }
    const QString& progressUnit() const { return m_progressUnit; }
    Outcome outcome() const { return m_outcome; }
    const QString& message() const { return m_message; } // the error text when Failed
    qint64 elapsedMs() const;

signals:
    void progress(qint64 done, qint64 total, const QString& stage);
    // Every 50 ms while running and once after the work returned (before finished): drain results here.
    void tick();
    void finished(lorafleet::ui::EngineJob::Outcome outcome, const QString& message);

private:
    struct Result; // written by the worker before the thread ends, read after QThread::finished
    void poll();
    void onThreadFinished();

    QString m_title;
    QString m_progressUnit;
    Work m_work;
    std::shared_ptr<JobContext> m_context = std::make_shared<JobContext>();
    std::shared_ptr<Result> m_result;
    std::unique_ptr<QThread> m_thread;
    QTimer m_timer;
    quint64 m_lastVersion = ~quint64(0);
    qint64 m_startedAtMs = 0;
    qint64 m_finishedAtMs = 0;
    bool m_running = false;
    bool m_finished = false;
    Outcome m_outcome = Outcome::Succeeded;
    QString m_message;
};

} // namespace lorafleet::ui
