// ServeController (see serve_controller.hpp).
#include "ui/serve/serve_controller.hpp"

#include "engine/api/chat_template.hpp"
#include "engine/api/http_server.hpp"
#include "engine/backend/device_choice.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/session/serving_session.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/process_memory.hpp"
#include "ui/serve/serve_resources.hpp"

#include <QDir>
#include <QFileInfo>

#include <algorithm>
#include <csignal>
#include <thread>

namespace lorafleet::ui {

namespace {
constexpr int kPollMs = 250;
constexpr double kEngineMetricsWindowS = 3; // rates and percentiles of the last 3 s: live, not jumpy
} // namespace

// Everything a running server is: built on the start job's thread, torn down on the stop job's (or, at
// exit, the GUI) thread. Destruction order: load generator, engine shutdown (cancels in-flight requests,
// so HTTP handlers return), HTTP stop and join (the socket is closed), then the objects.
struct ServeController::Runtime {
    std::unique_ptr<serve::serving_engine> engine;
    std::unique_ptr<api::http_server> http;
    std::thread httpThread;
    std::unique_ptr<LoadGenerator> load;
    std::vector<std::vector<int>> prompts; // tokenized sonnets
    QString promptError;                   // why there are no prompts
    int port = 0;
    QString mode, modelName, device, deviceNote;
    bool apiKey = false;
    QStringList adapters;
    QList<SkippedAdapter> skipped; // filled by the setup: adapters left out, with reasons

    ~Runtime() {
        load.reset();
        if (engine) engine->shutdown(false);
        if (http) http->stop();
        if (httpThread.joinable()) httpThread.join();
        http.reset();
        engine.reset();
    }
};

ServeController::ServeController(EngineHost* host, QObject* parent) : QObject(parent), m_host(host) {
    m_poll.setInterval(kPollMs);
    connect(&m_poll, &QTimer::timeout, this, &ServeController::pollNow);
}

ServeController::~ServeController() {
    m_poll.stop();
    delete m_job.data(); // joins a start or stop job still running
    m_runtime.reset();   // synchronous teardown
}

EngineJob* ServeController::startJob(const QString& title, EngineJob::Work work) {
    if (m_host) return m_host->start(title, std::move(work), this, EngineHost::Visibility::Quiet);
    auto* job = new EngineJob(title, std::move(work), this);
    job->start();
    return job;
}

void ServeController::setState(State s) {
    if (m_state == s) return;
    m_state = s;
    emit stateChanged(s);
}

void ServeController::start(const ServeConfig& config) {
    if (m_state != State::Stopped) return;
    m_lastError.clear();
    m_skipped.clear();
    m_history.clear();
    m_history.setBaselineRss(residentSetBytes().value_or(0)); // before anything of the server is loaded
    m_lastSnapshot.reset();
    setState(State::Starting);
    auto pending = std::make_shared<std::shared_ptr<Runtime>>();
    m_pending = pending;
    const QString prompts = config.promptsFile.isEmpty() ? sonnetsPath() : config.promptsFile;
    // No model chosen and no demo model found: say where the demo model was looked for.
    const QString missing = config.modelDir.trimmed().isEmpty() ? demoModelMissingReason() : QString();
    m_job = startJob(tr("Starting the server"), [config, pending, prompts, missing](JobContext& ctx) {
        namespace fs = std::filesystem;
        const QString modelDir = config.modelDir.trimmed();
        if (modelDir.isEmpty())
            throw usage_error("serve", missing.isEmpty() ? std::string("choose a model folder")
                                                         : "choose a model folder. " + missing.toStdString());
        if (!QFileInfo(modelDir).isDir())
            throw io_error(modelDir.toStdString(), "the model folder does not exist");
        if (!QFileInfo::exists(modelDir + QStringLiteral("/config.json")))
            throw io_error(modelDir.toStdString(), "not a HuggingFace model folder (no config.json)");
        if (config.port < 0 || config.port > 65535) throw usage_error("serve", "the port must be 0..65535");
        if (config.threads < 0) throw usage_error("serve", "threads must be >= 0 (0 = all)");
        const std::string key = config.apiKey.toStdString();
        for (char c : key)
            if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
                throw usage_error("serve",
                                  "the API key must be one token without spaces or control characters");
        const fs::path model = modelDir.toStdString();
        auto rt = std::make_shared<Runtime>();
        serve::session_options setup;
        setup.model_dir = model;
        switch (config.source) {
        case ServeConfig::Source::Bank:
            if (!config.bank)
                throw usage_error("serve", "there is no compressed bank yet: compress the fleet first");
            setup.adapters.source = serve::adapter_source::bank_in_memory;
            setup.adapters.bank = config.bank;
            setup.adapters.bank_label = "the workspace's bank";
            break;
        case ServeConfig::Source::RawFolders:
            if (config.adapterFolders.isEmpty())
                throw usage_error("serve", "add at least one adapter folder");
            setup.adapters.source = serve::adapter_source::raw_folders;
            for (const QString& f : config.adapterFolders)
                setup.adapters.raw_paths.emplace_back(f.toStdString());
            setup.adapters.raw_cache_bytes = std::uint64_t(std::max(1, config.adapterCacheMiB)) << 20;
            break;
        case ServeConfig::Source::BaseOnly:
            break;
        }
        setup.engine.kv_cache_bytes = std::uint64_t(std::max(1, config.kvCacheMiB)) << 20;
        setup.engine.threads = config.threads;
        setup.engine.device = backend::parse_device_choice(config.device.toStdString(), "device");
        setup.engine.metrics_window_s = kEngineMetricsWindowS;
        setup.on_stage = [&ctx](std::string_view stage) { // between stages: report, and honour Cancel
            ctx.throwIfCancelled();
            ctx.setStage(QString::fromUtf8(stage.data(), qsizetype(stage.size())));
        };
        serve::serving_session session = serve::open_serving_session(setup);
        ctx.throwIfCancelled();
        for (const auto& s : session.skipped)
            rt->skipped.append({QString::fromStdString(s.name), QString::fromStdString(s.folder.string()),
                                QString::fromStdString(s.reason)});
        rt->engine = std::move(session.engine);
        for (const auto& a : rt->engine->adapters())
            rt->adapters << QString::fromStdString(a.name);
        rt->adapters.sort();
        rt->mode = QString::fromLatin1(rt->engine->adapter_mode().data(),
                                       qsizetype(rt->engine->adapter_mode().size()));
        rt->device = QString::fromLatin1(rt->engine->device().data(), qsizetype(rt->engine->device().size()));
        rt->deviceNote = QString::fromStdString(rt->engine->device_note());

        ctx.setStage(QStringLiteral("Reading the prompts"));
        try {
            if (prompts.isEmpty())
                throw io_error("sonnets.txt", "the bundled prompts were not found (set LORAFLEET_RESOURCES)");
            for (const QString& text : readPromptFile(prompts)) {
                auto ids = rt->engine->tokenizer().encode(text.toStdString(), true);
                if (!ids.empty()) rt->prompts.push_back(std::move(ids));
            }
        } catch (const std::exception& e) {
            rt->promptError = QString::fromUtf8(e.what());
        }

        ctx.setStage(QStringLiteral("Starting the HTTP server"));
        std::signal(SIGPIPE, SIG_IGN); // a vanished HTTP client is an error return, not a signal
        api::server_options httpOptions;
        httpOptions.host = "127.0.0.1";
        httpOptions.port = config.port;
        httpOptions.http_threads = 8;
        httpOptions.api_key = key;
        rt->apiKey = !key.empty();
        rt->http = std::make_unique<api::http_server>(*rt->engine, api::chat_template::from_model_dir(model),
                                                      httpOptions);
        rt->port = rt->http->bind();
        rt->modelName = QString::fromStdString(rt->http->base_name());
        api::http_server* http = rt->http.get();
        rt->httpThread = std::thread([http] { http->run(); });
        *pending = std::move(rt);
    });
    connect(m_job, &EngineJob::finished, this, &ServeController::onStartFinished);
}

void ServeController::onStartFinished(EngineJob::Outcome outcome, const QString& message) {
    auto pending = std::move(m_pending);
    if (m_job) m_job->deleteLater();
    if (outcome != EngineJob::Outcome::Succeeded || !pending || !*pending) {
        m_lastError = outcome == EngineJob::Outcome::Cancelled ? tr("Cancelled") : message;
        if (pending) pending->reset();
        setState(State::Stopped);
        emit failed(m_lastError);
        return;
    }
    m_runtime = std::move(*pending);
    m_skipped = m_runtime->skipped;
    setState(State::Running);
    pollNow();
    m_poll.start();
    emit started(m_runtime->port);
}

void ServeController::stop() {
    if (m_state != State::Running) return;
    m_poll.stop();
    pollNow(); // the final numbers stay on the charts
    setState(State::Stopping);
    auto runtime = std::make_shared<std::shared_ptr<Runtime>>(std::move(m_runtime));
    m_job = startJob(tr("Stopping the server"), [runtime](JobContext&) { runtime->reset(); });
    connect(m_job, &EngineJob::finished, this, [this, runtime](EngineJob::Outcome, const QString&) {
        runtime->reset(); // normally done by the job already
        if (m_job) m_job->deleteLater();
        m_loadWasRunning = false;
        setState(State::Stopped);
        emit stopped();
    });
}

bool ServeController::startLoad(const LoadSettings& settings, QString* error) {
    auto fail = [&](const QString& why) {
        if (error) *error = why;
        return false;
    };
    if (m_state != State::Running || !m_runtime) return fail(tr("Start the server first."));
    if (m_runtime->prompts.empty())
        return fail(m_runtime->promptError.isEmpty() ? tr("No prompts.") : m_runtime->promptError);
    std::vector<std::string> names;
    for (const QString& n : m_runtime->adapters)
        names.push_back(n.toStdString());
    try {
        m_runtime->load.reset();
        m_runtime->load = std::make_unique<LoadGenerator>(*m_runtime->engine, m_runtime->prompts,
                                                          std::move(names), settings);
    } catch (const std::exception& e) {
        return fail(QString::fromUtf8(e.what()));
    }
    m_loadWasRunning = true;
    return true;
}

void ServeController::stopLoad() {
    if (m_runtime && m_runtime->load) m_runtime->load->stop();
}

bool ServeController::isLoadRunning() const {
    if (!m_runtime || !m_runtime->load) return false;
    return m_runtime->load->isSubmitting() || m_runtime->load->tally().outstanding() > 0;
}

std::optional<LoadTally> ServeController::loadTally() const {
    if (!m_runtime || !m_runtime->load) return std::nullopt;
    return m_runtime->load->tally();
}

int ServeController::port() const {
    return m_runtime ? m_runtime->port : 0;
}
QString ServeController::adapterMode() const {
    return m_runtime ? m_runtime->mode : QString();
}
QStringList ServeController::adapterNames() const {
    return m_runtime ? m_runtime->adapters : QStringList();
}
QString ServeController::modelName() const {
    return m_runtime ? m_runtime->modelName : QString();
}
QString ServeController::device() const {
    return m_runtime ? m_runtime->device : QString();
}
QString ServeController::deviceNote() const {
    return m_runtime ? m_runtime->deviceNote : QString();
}
bool ServeController::requiresApiKey() const {
    return m_runtime && m_runtime->apiKey;
}
serve::serving_engine* ServeController::engine() const {
    return m_runtime ? m_runtime->engine.get() : nullptr;
}

bool ServeController::hasAdapterCache() const {
    return m_runtime &&
           (m_runtime->mode == QLatin1String("raw") || m_runtime->mode == QLatin1String("hybrid"));
}

void ServeController::clearHistory() {
    m_history.clear();
    m_lastSnapshot.reset();
    emit sampled();
}

void ServeController::pollNow() {
    if (!m_runtime) return;
    serve::metrics_snapshot snapshot = m_runtime->engine->metrics();
    if (m_history.add(snapshot, hasAdapterCache())) {
        m_lastSnapshot = std::move(snapshot);
        emit sampled();
    }
    if (m_loadWasRunning && !isLoadRunning()) {
        m_loadWasRunning = false;
        emit loadFinished();
    }
}

} // namespace lorafleet::ui
