// DemoWorkspace (see demo_workspace.hpp).
#include "ui/workspace/demo_workspace.hpp"

#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/synth/synthetic_fleet.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/import_controller.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QTemporaryDir>

namespace lorafleet::ui {

DemoWorkspace::DemoWorkspace(Session* session, QObject* parent) : QObject(parent), m_session(session) {}

namespace {
constexpr int kDemoRank = 8;
constexpr int kDemoClusters = 5;
} // namespace

CompressSettings DemoWorkspace::demoSettings() {
    CompressSettings s;
    s.method = compress::jd_method::full;
    s.rank = kDemoRank;
    s.clusters = kDemoClusters;
    // targetError: the default of a new workspace (one default everywhere; the demo's count is fixed).
    s.seed = 2407;
    return s;
}

DemoWorkspace::~DemoWorkspace() {
    delete m_job.data(); // join the generator before its output folder is removed
}

QString DemoWorkspace::folder() const {
    return m_dir ? m_dir->path() + QStringLiteral("/fleet") : QString();
}

void DemoWorkspace::start(int adapters) {
    disconnectImporter(); // a previous demo's import, if any, is abandoned below
    delete m_job.data();
    m_session->newWorkspace();
    m_running = true;
    QString error;
    m_session->setBaseModel(QString::fromLatin1(kPreset), &error);
    m_dir = std::make_unique<QTemporaryDir>(QDir::tempPath() + QStringLiteral("/lorafleet-demo-XXXXXX"));
    if (!m_dir->isValid()) {
        m_running = false;
        emit finished(false,
                      QStringLiteral("cannot create a temporary folder: %1").arg(m_dir->errorString()));
        return;
    }
    synth::synth_options options;
    options.out_dir = folder().toStdString();
    options.adapters = adapters;
    options.geometry = *io::geometry_preset(kPreset);
    options.modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
    options.rank = kDemoRank;
    options.alpha = 16.0;
    options.clusters = kDemoClusters;
    options.seed = 2407;
    options.threads = 1; // leave the other core to the GUI
    m_job = m_session->host()->start(
        QStringLiteral("Generating demo fleet"),
        [options](JobContext& ctx) {
            ctx.setStage(QStringLiteral("Generating demo fleet"));
            synth::write_synthetic_fleet(options, [&ctx](int done, int total) {
                ctx.setProgress(done, total);
                return !ctx.isCancelled();
            });
        },
        this);
    m_job->setProgressUnit(QStringLiteral("adapters"));
    connect(m_job, &EngineJob::finished, this, &DemoWorkspace::onGenerated);
}

void DemoWorkspace::onGenerated() {
    EngineJob* job = m_job.data();
    if (!job) return;
    const auto outcome = job->outcome();
    const QString message = job->message();
    m_job = nullptr;
    job->deleteLater();
    if (outcome != EngineJob::Outcome::Succeeded) {
        m_running = false;
        emit finished(false, outcome == EngineJob::Outcome::Cancelled
                                 ? QStringLiteral("Demo cancelled")
                                 : QStringLiteral("Demo fleet generation failed: %1").arg(message));
        return;
    }
    // Done when the import of exactly this folder finished; interrupted when the importer went idle
    // without it (the operator opened another workspace meanwhile).
    m_finishedConnection =
        connect(m_session->importer(), &ImportController::finished, this, &DemoWorkspace::onImportFinished);
    m_idleConnection =
        connect(m_session->importer(), &ImportController::idle, this, &DemoWorkspace::onImportIdle);
    m_session->addTemporaryAdapterRoot(folder()); // saving the demo copies its adapters beside it
    m_session->importPaths({folder()});
}

void DemoWorkspace::disconnectImporter() {
    disconnect(m_finishedConnection);
    disconnect(m_idleConnection);
    disconnect(m_compressConnection);
}

void DemoWorkspace::onImportFinished(const ImportReport& report) {
    if (report.paths != QStringList{folder()}) return;
    disconnectImporter();
    m_session->workspace()->markClean();
    QString error;
    m_compressConnection =
        connect(m_session->compressor(), &CompressController::finished, this, &DemoWorkspace::onCompressed);
    if (!m_session->compressor()->start(demoSettings(), &error)) {
        disconnect(m_compressConnection);
        m_running = false;
        emit finished(false, QStringLiteral("Demo compression did not start: %1").arg(error));
    }
}

void DemoWorkspace::onCompressed(EngineJob::Outcome outcome, const QString& message) {
    disconnect(m_compressConnection);
    m_running = false;
    if (outcome != EngineJob::Outcome::Succeeded) {
        emit finished(false, QStringLiteral("Demo fleet imported; %1").arg(message));
        return;
    }
    m_session->workspace()->markClean(); // nothing the operator made: no question on exit
    emit finished(true, QStringLiteral("Demo fleet: %1 adapters on %2 in %3, compressed into %4 clusters")
                            .arg(m_session->store()->size())
                            .arg(QLatin1String(kPreset), folder())
                            .arg(m_session->bank() ? m_session->bank()->clusters : 0));
}

void DemoWorkspace::onImportIdle() {
    disconnectImporter();
    m_running = false;
    emit finished(false, QStringLiteral("Demo import interrupted"));
}

} // namespace lorafleet::ui
