// DemoWorkspace: `lorafleet --demo`. Generates a synthetic fleet (engine/synth, planted clusters) on the
// tinystories-656k geometry into a temporary folder on a worker thread (status-bar progress, cancellable),
// then imports it through the Session like any other folder, with the base model set to the preset, then
// compresses it once with demoSettings() through the session's CompressController (a few seconds), so
// every view of the console has data. The generated workspace is left clean (nothing the operator made needs
// saving). The temporary folder lives as long as this object, i.e. for the whole console session; the
// generator is joined before the folder is removed. The folder is registered as the session's temporary
// adapter root: saving the demo workspace copies its adapters to NAME.adapters/ beside the workspace. Thread
// affinity: GUI thread (the generator runs on an EngineJob worker).
#pragma once

#include "ui/common/engine_job.hpp"
#include "ui/compress/compress_settings.hpp"

#include <QObject>
#include <QPointer>

#include <memory>

class QTemporaryDir;

namespace lorafleet::ui {

class EngineJob;
class Session;
struct ImportReport;

class DemoWorkspace : public QObject {
    Q_OBJECT
public:
    static constexpr int kAdapters = 200;
    static constexpr const char* kPreset = "tinystories-656k";
    // JD-Full at the generated adapters' rank with the planted cluster count: exact structure, quick.
    static CompressSettings demoSettings();

    explicit DemoWorkspace(Session* session, QObject* parent = nullptr);
    ~DemoWorkspace() override;

    // Replaces the session's workspace with the demo (the caller asks about unsaved changes first).
    void start(int adapters = kAdapters);
    bool isRunning() const { return m_running; }
    QString folder() const; // the generated fleet ("" before start)

signals:
    void finished(bool ok, const QString& message); // after the import of the generated fleet

private:
    void onGenerated();
    void onImportFinished(const ImportReport& report);
    void onImportIdle();
    void onCompressed(EngineJob::Outcome outcome, const QString& message);
    void disconnectImporter();

    Session* m_session;
    std::unique_ptr<QTemporaryDir> m_dir;
    QPointer<EngineJob> m_job;
    QMetaObject::Connection m_finishedConnection;
    QMetaObject::Connection m_idleConnection;
    QMetaObject::Connection m_compressConnection;
    bool m_running = false;
};

} // namespace lorafleet::ui
