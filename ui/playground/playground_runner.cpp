// PlaygroundRunner (see playground_runner.hpp).
#include "ui/playground/playground_runner.hpp"

#include "engine/core/error.hpp"
#include "engine/serve/session/serving_session.hpp"
#include "ui/common/engine_host.hpp"

#include <QDateTime>
#include <QFileInfo>

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace lorafleet::ui {

// What runs are made of, kept between runs. Only the running job's worker touches it (one job at a time).
struct PlaygroundRunner::Runtime {
    std::string modelDir;
    serve::served_model model;
    std::unique_ptr<serve::serving_engine> base;
    const bank::compressed_bank* bankKey = nullptr;
    std::shared_ptr<const bank::compressed_bank> bank; // keeps bankKey alive
    std::unique_ptr<serve::serving_engine> compressed;
    std::string rawFolder;
    std::unique_ptr<serve::serving_engine> raw;
    int threads = 0;

    ~Runtime() { // engines before the model they share
        raw.reset();
        compressed.reset();
        base.reset();
    }
};

namespace {

// Requests of one run still waiting for their on_done.
struct Pending {
    std::mutex mutex;
    std::condition_variable done;
    int left = 0;
};

} // namespace

PlaygroundRunner::PlaygroundRunner(EngineHost* host, QObject* parent)
    : QObject(parent), m_host(host), m_runtime(std::make_shared<Runtime>()) {}

PlaygroundRunner::~PlaygroundRunner() {
    delete m_job.data(); // cancels and joins: no callback of the run is left to call us
    m_runtime.reset();   // shuts the engines down
}

double PlaygroundRunner::elapsedSeconds() const {
    return m_startedMs ? double(QDateTime::currentMSecsSinceEpoch() - m_startedMs) / 1e3 : 0;
}

void PlaygroundRunner::cancel() {
    if (m_job) m_job->cancel();
}

bool PlaygroundRunner::run(const PlaygroundRequest& request, QString* error) {
    auto fail = [&](const QString& why) {
        if (error) *error = why;
        return false;
    };
    if (isRunning()) return fail(tr("A run is in progress."));
    if (request.modelDir.trimmed().isEmpty()) return fail(tr("Choose a model folder."));
    if (!QFileInfo::exists(request.modelDir + QStringLiteral("/config.json")))
        return fail(tr("%1 is not a HuggingFace model folder (no config.json).").arg(request.modelDir));
    if (request.prompt.trimmed().isEmpty()) return fail(tr("Type a prompt."));
    if (request.maxTokens < 1) return fail(tr("Max tokens must be at least 1."));

    const bool wants[kPlaygroundColumns] = {!request.adapter.isEmpty() && !request.rawFolder.isEmpty(),
                                            !request.adapter.isEmpty() && request.bank != nullptr, true};
    for (int c = 0; c < kPlaygroundColumns; ++c) {
        m_out[std::size_t(c)] = PlaygroundOutput{};
        m_out[std::size_t(c)].requested = wants[c];
    }
    m_startedMs = QDateTime::currentMSecsSinceEpoch();

    QPointer<PlaygroundRunner> self(this);
    PlaygroundRunner* target = this; // valid while the job runs: the destructor joins the job first
    auto rt = m_runtime;
    const PlaygroundRequest req = request;
    const std::array<bool, kPlaygroundColumns> want = {wants[0], wants[1], wants[2]};
    auto work = [rt, req, want, target](JobContext& ctx) {
        auto post_done = [target](int column, bool ok, QString text, std::vector<int> tokens, double seconds,
                                  QString why) {
            QMetaObject::invokeMethod(
                target,
                [target, column, ok, text = std::move(text), tokens = std::move(tokens), seconds,
                 why = std::move(why)]() mutable {
                    target->onDone(column, ok, text, std::move(tokens), seconds, why);
                },
                Qt::QueuedConnection);
        };
        const std::string modelDir = req.modelDir.toStdString();
        if (rt->modelDir != modelDir || rt->threads != req.threads) {
            ctx.setStage(QStringLiteral("Loading the model"));
            rt->raw.reset();
            rt->compressed.reset();
            rt->base.reset();
            rt->rawFolder.clear();
            rt->bankKey = nullptr;
            rt->bank.reset();
            rt->modelDir.clear();
            rt->model = serve::load_served_model(modelDir);
            rt->modelDir = modelDir;
            rt->threads = req.threads;
        }
        serve::engine_options eo;
        eo.threads = req.threads;
        eo.kv_cache_bytes = 64ull << 20;
        if (!rt->base) rt->base = serve::start_engine(rt->model, nullptr, eo);
        ctx.throwIfCancelled();

        std::array<serve::serving_engine*, kPlaygroundColumns> engines = {nullptr, nullptr, rt->base.get()};
        std::array<std::string, kPlaygroundColumns> names = {"", req.adapter.toStdString(), ""};
        if (want[0]) {
            try {
                const std::string folder = req.rawFolder.toStdString();
                if (!rt->raw || rt->rawFolder != folder) {
                    ctx.setStage(QStringLiteral("Loading the adapter"));
                    rt->raw.reset();
                    rt->rawFolder.clear();
                    serve::adapter_options ao;
                    ao.source = serve::adapter_source::raw_folders;
                    ao.raw_paths = {folder};
                    ao.raw_cache_bytes = 256ull << 20;
                    ao.skip_unusable = false; // one folder: its error is the column's error
                    auto opened = serve::open_adapters(ao, rt->model.weights->geometry());
                    rt->raw = serve::start_engine(rt->model, std::move(opened.provider), eo);
                    rt->rawFolder = folder;
                }
                const auto listed = rt->raw->adapters();
                if (listed.empty()) throw validation_error(folder, "holds no adapter");
                names[0] = listed.front().name;
                engines[0] = rt->raw.get();
            } catch (const cancelled_error&) {
                throw;
            } catch (const std::exception& e) {
                post_done(0, false, {}, {}, 0, QString::fromUtf8(e.what()));
            }
        }
        if (want[1]) {
            try {
                if (!rt->compressed || rt->bankKey != req.bank.get()) {
                    ctx.setStage(QStringLiteral("Loading the bank"));
                    rt->compressed.reset();
                    rt->bankKey = nullptr;
                    serve::adapter_options ao;
                    ao.source = serve::adapter_source::bank_in_memory;
                    ao.bank = req.bank;
                    ao.bank_label = "the workspace's bank";
                    auto opened = serve::open_adapters(ao, rt->model.weights->geometry());
                    rt->compressed = serve::start_engine(rt->model, std::move(opened.provider), eo);
                    rt->bank = req.bank;
                    rt->bankKey = req.bank.get();
                }
                engines[1] = rt->compressed.get();
            } catch (const cancelled_error&) {
                throw;
            } catch (const std::exception& e) {
                post_done(1, false, {}, {}, 0, QString::fromUtf8(e.what()));
            }
        }
        ctx.throwIfCancelled();
        ctx.setStage(QStringLiteral("Generating"));
        const std::vector<int> prompt = rt->model.tokenizer->encode(req.prompt.toStdString(), true);
        if (prompt.empty()) throw usage_error("playground", "the prompt has no token");

        auto pending = std::make_shared<Pending>();
        std::vector<std::pair<serve::serving_engine*, std::uint64_t>> submitted;
        for (int c = 0; c < kPlaygroundColumns; ++c) {
            if (!engines[std::size_t(c)]) continue;
            serve::completion_request r;
            r.adapter = names[std::size_t(c)];
            r.prompt = prompt;
            r.params.max_tokens = req.maxTokens;
            r.params.sampling.temperature = float(req.temperature);
            r.params.sampling.seed = req.seed;
            r.on_text = [target, c](std::string_view piece) {
                QMetaObject::invokeMethod(
                    target,
                    [target, c, text = QString::fromUtf8(piece.data(), qsizetype(piece.size()))] {
                        target->onPiece(c, text);
                    },
                    Qt::QueuedConnection);
            };
            r.on_done = [post_done, pending, c](const serve::completion_result& res) {
                const bool ok = res.status == serve::completion_status::finished;
                post_done(c, ok, QString::fromStdString(res.text), res.tokens, res.total_s,
                          ok ? QString()
                          : res.status == serve::completion_status::cancelled
                              ? QStringLiteral("cancelled")
                              : QString::fromStdString(res.error));
                std::lock_guard lock(pending->mutex);
                --pending->left;
                pending->done.notify_all();
            };
            {
                std::lock_guard lock(pending->mutex);
                ++pending->left;
            }
            try {
                submitted.emplace_back(engines[std::size_t(c)],
                                       engines[std::size_t(c)]->submit(std::move(r)));
            } catch (const std::exception& e) { // refused: nothing queued, on_done not called
                {
                    std::lock_guard lock(pending->mutex);
                    --pending->left;
                }
                post_done(c, false, {}, {}, 0, QString::fromUtf8(e.what()));
            }
        }
        bool cancelled = false;
        std::unique_lock lock(pending->mutex);
        while (pending->left > 0) {
            pending->done.wait_for(lock, std::chrono::milliseconds(50));
            if (!cancelled && ctx.isCancelled()) {
                cancelled = true;
                lock.unlock();
                for (const auto& [engine, id] : submitted)
                    engine->cancel(id);
                lock.lock();
            }
        }
    };
    m_job = m_host ? m_host->start(tr("Playground"), std::move(work), this, EngineHost::Visibility::Quiet)
                   : new EngineJob(tr("Playground"), std::move(work), this);
    if (!m_host) m_job->start();
    connect(m_job, &EngineJob::finished, this,
            [this, self](EngineJob::Outcome outcome, const QString& message) {
                if (!self) return;
                if (m_job) m_job->deleteLater();
                m_job.clear();
                for (auto& out : m_out) // a setup failure leaves requested columns without their on_done
                    if (out.requested && !out.done) {
                        out.done = true;
                        out.error =
                            outcome == EngineJob::Outcome::Cancelled ? QStringLiteral("cancelled") : message;
                    }
                emit finished(outcome == EngineJob::Outcome::Succeeded,
                              outcome == EngineJob::Outcome::Cancelled ? tr("Cancelled") : message);
            });
    return true;
}

void PlaygroundRunner::onPiece(int column, const QString& piece) {
    PlaygroundOutput& out = m_out[std::size_t(column)];
    if (out.done) return;
    out.text += piece;
    ++out.pieces;
    emit textAppended(PlaygroundColumn(column), piece);
}

void PlaygroundRunner::onDone(int column, bool ok, const QString& text, std::vector<int> tokens,
                              double seconds, const QString& error) {
    PlaygroundOutput& out = m_out[std::size_t(column)];
    out.done = true;
    if (ok) out.text = text; // the engine's final text (equal to the pieces concatenated)
    out.tokens = std::move(tokens);
    out.seconds = seconds;
    out.error = error;
    emit columnFinished(PlaygroundColumn(column));
}

} // namespace lorafleet::ui
