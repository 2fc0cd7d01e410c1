// Session: the console's core without widgets. It owns the workspace document, the fleet store, the
// import controller and the engine host, and keeps them consistent: adapters that enter or leave the
// store enter or leave the workspace's folder list (so the title's "*" follows), the workspace's base
// model is what imports are validated against, and opening a workspace replaces the fleet with the
// workspace's folders (a parent folder listed in a hand-written workspace is expanded to its adapters
// without marking the document modified). Menu actions, drag and drop, the demo and the tests all go through
// these methods. Thread affinity: GUI thread.
#pragma once

#include <QObject>
#include <QStringList>

namespace lorafleet::ui {

class EngineHost;
class FleetStore;
class ImportController;
class Workspace;
struct ImportReport;

class Session : public QObject {
    Q_OBJECT
public:
    explicit Session(QObject* parent = nullptr);
    ~Session() override;

    Workspace* workspace() const { return m_workspace; }
    FleetStore* store() const { return m_store; }
    ImportController* importer() const { return m_importer; }
    EngineHost* host() const { return m_host; }

    // An empty untitled workspace (running imports are abandoned). The caller asks about unsaved
    // changes first.
    void newWorkspace();
    // Reads `path`; on success replaces the document and the fleet and starts importing its adapters
    // (returns before they are loaded: wait for idle()). On failure nothing changes and `error` says why.
    bool openWorkspace(const QString& path, QString* error);
    bool saveWorkspace(const QString& path, QString* error);
    // A preset name, a config.json / model folder, or "" for none; applies to later imports. False (and
    // nothing changes) when it cannot be resolved.
    bool setBaseModel(const QString& baseModel, QString* error);

    void importPaths(const QStringList& paths);
    void removeRows(const QList<int>& storeRows);
    // Forgets the listed problems; folders that came from the workspace are dropped from it too.
    void dismissProblems();
    bool isBusy() const;

signals:
    void operationFinished(const QString& text); // one line for the status bar
    void idle();                                 // the last running import finished

private:
    void onImportFinished(const ImportReport& report);
    void adoptOpenedFolders();
    void applyBaseModel();

    // The import started by openWorkspace(): when it ends with nothing else done meanwhile, the folder
    // list is normalised to one entry per adapter without making the document dirty.
    struct OpeningImport {
        QStringList listed;   // the workspace's folders as read
        bool pending = false; // its import has not finished
        bool tainted = false; // the operator changed the fleet or base model meanwhile
    };
    OpeningImport m_opening;

    Workspace* m_workspace;
    FleetStore* m_store;
    EngineHost* m_host;
    ImportController* m_importer;
};

} // namespace lorafleet::ui
