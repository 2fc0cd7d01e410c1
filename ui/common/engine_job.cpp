// EngineJob: a worker thread per job, progress polled from atomics by a GUI timer (see engine_job.hpp).
#include "ui/common/engine_job.hpp"

#include "engine/core/error.hpp"
#include "ui/common/text_format.hpp"

#include <QDateTime>
#include <QMutexLocker>
#include <QThread>

#include <exception>

namespace lorafleet::ui {

namespace {
constexpr int kPollIntervalMs = 50;
}

void JobContext::throwIfCancelled() const {
    if (isCancelled()) throw cancelled_error("", "cancelled");
}

void JobContext::setProgress(qint64 done, qint64 total) noexcept {
    m_done.store(done, std::memory_order_relaxed);
    m_total.store(total, std::memory_order_relaxed);
    m_version.fetch_add(1, std::memory_order_release);
}

void JobContext::setStage(const QString& text) {
    {
        QMutexLocker lock(&m_stageMutex);
        m_stage = text;
    }
    m_version.fetch_add(1, std::memory_order_release);
}

JobContext::Snapshot JobContext::snapshot() const {
    Snapshot s;
    s.version = m_version.load(std::memory_order_acquire);
    s.done = m_done.load(std::memory_order_relaxed);
    s.total = m_total.load(std::memory_order_relaxed);
    QMutexLocker lock(&m_stageMutex);
    s.stage = m_stage;
    return s;
}

struct EngineJob::Result {
    Outcome outcome = Outcome::Succeeded;
    QString message;
};

EngineJob::EngineJob(QString title, Work work, QObject* parent)
    : QObject(parent), m_title(std::move(title)), m_work(std::move(work)) {
    m_timer.setInterval(kPollIntervalMs);
    connect(&m_timer, &QTimer::timeout, this, &EngineJob::poll);
}

EngineJob::~EngineJob() {
    m_context->requestCancel();
    if (m_thread) m_thread->wait();
}

void EngineJob::start() {
    Q_ASSERT(!m_thread && "an EngineJob runs once");
    if (m_thread) return;
    m_result = std::make_shared<Result>();
    // The thread function holds only shared state: the job may be destroyed (and join) at any time.
    auto ctx = m_context;
    auto result = m_result;
    auto work = std::move(m_work);
    m_thread.reset(QThread::create([ctx, result, work = std::move(work)]() {
        try {
            work(*ctx);
            if (ctx->isCancelled()) result->outcome = Outcome::Cancelled;
        } catch (const cancelled_error&) {
            result->outcome = Outcome::Cancelled;
        } catch (const std::exception& e) {
            result->outcome = ctx->isCancelled() ? Outcome::Cancelled : Outcome::Failed;
            result->message = oneLine(QString::fromStdString(e.what()));
        } catch (...) {
            result->outcome = Outcome::Failed;
            result->message = QStringLiteral("unexpected error");
        }
    }));
    m_thread->setObjectName(m_title.left(15));
    // QThread::finished is emitted on the worker thread; the receiver lives here, so this is queued.
    connect(m_thread.get(), &QThread::finished, this, &EngineJob::onThreadFinished, Qt::QueuedConnection);
    m_running = true;
    m_startedAtMs = QDateTime::currentMSecsSinceEpoch();
    m_thread->start(QThread::LowPriority);
    m_timer.start();
}

void EngineJob::cancel() {
    m_context->requestCancel();
}

qint64 EngineJob::elapsedMs() const {
    if (!m_startedAtMs) return 0;
    return (m_finished ? m_finishedAtMs : QDateTime::currentMSecsSinceEpoch()) - m_startedAtMs;
}

void EngineJob::poll() {
    const auto s = m_context->snapshot();
    if (s.version != m_lastVersion) {
        m_lastVersion = s.version;
        emit progress(s.done, s.total, s.stage);
    }
    emit tick();
}

void EngineJob::onThreadFinished() {
    if (m_finished) return;
    m_timer.stop();
    m_thread->wait(); // already finished; makes the worker's writes to *m_result visible here
    m_running = false;
    m_finished = true;
    m_finishedAtMs = QDateTime::currentMSecsSinceEpoch();
    m_outcome = m_result->outcome;
    m_message = m_result->message;
    poll(); // the last progress and a final tick, so owners drain every result before `finished`
    emit finished(m_outcome, m_message);
}

} // namespace lorafleet::ui
