// Session: the console's core without widgets. It owns the workspace document, the fleet store, the
// import controller and the engine host, and keeps them consistent: adapters that enter or leave the
// store enter or leave the workspace's folder list (so the title's "*" follows), the workspace's base
// model is what imports are validated against, and opening a workspace replaces the fleet with the
// workspace's folders (a parent folder listed in a hand-written workspace is expanded to its adapters
// without marking the document modified). Menu actions, drag and drop, the demo and the tests all go through
// these methods.
//
// The session also holds the current compressed bank (immutable, shared with the views and with export
// jobs) and the CompressController that produces it. A bank enters by a finished compression (then it
// is "unsaved": the workspace is marked modified, and saving the workspace writes the bank beside it, or
// to the workspace's bank path when it has one) or by opening a workspace whose bank path holds a bank
// (read on a worker; a bank that cannot be read is reported and left out). Every time the bank or the
// fleet changes, the store's cluster / error columns are set from the bank by adapter name (adapters the
// bank does not know are blanked). Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <QObject>
#include <QPointer>
#include <QStringList>

#include <memory>

namespace lorafleet::ui {

class CompressController;
class EngineHost;
class EngineJob;
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
    CompressController* compressor() const { return m_compressor; }

    // The current bank; null before any compression (or after New).
    std::shared_ptr<const bank::compressed_bank> bank() const { return m_bank; }
    // Replaces the bank and applies its clusters and errors to the store. `unsaved`: the bank exists
    // only in memory (a new compression), so the workspace is marked modified and Save writes it.
    void setBank(std::shared_ptr<const bank::compressed_bank> bank, bool unsaved = false);
    bool isBankUnsaved() const { return m_bank && m_bankUnsaved; }
    // Records that the current bank is now stored at `path` (File > Export Bank, or Save): the
    // workspace's bank path becomes `path`.
    void markBankSaved(const QString& path);
    // Where Save puts an unsaved bank of a workspace saved at `workspacePath`: the workspace's bank path
    // when it has one, else "<folder>/<workspace base name>.bank".
    QString bankPathFor(const QString& workspacePath) const;
    bool isLoadingBank() const { return !m_bankJob.isNull(); }

    // An empty untitled workspace (running imports are abandoned). The caller asks about unsaved
    // changes first.
    void newWorkspace();
    // Reads `path`; on success replaces the document and the fleet and starts importing its adapters
    // (returns before they are loaded: wait for idle()). On failure nothing changes and `error` says why.
    bool openWorkspace(const QString& path, QString* error);
    // Writes an unsaved bank first (see bankPathFor); on any failure nothing is marked saved.
    bool saveWorkspace(const QString& path, QString* error);
    // A preset name, a config.json / model folder, or "" for none; applies to later imports. False (and
    // nothing changes) when it cannot be resolved.
    bool setBaseModel(const QString& baseModel, QString* error);

    void importPaths(const QStringList& paths);
    void removeRows(const QList<int>& storeRows);
    // Forgets the listed problems; folders that came from the workspace are dropped from it too.
    void dismissProblems();
    bool isBusy() const; // an import, a bank being read or a compression is running

signals:
    void operationFinished(const QString& text); // one line for the status bar
    void idle();                                 // the last running import finished
    void bankChanged();                          // bank() was replaced (possibly by null)

private:
    void onImportFinished(const ImportReport& report);
    void adoptOpenedFolders();
    void applyBaseModel();
    void applyBankResults(); // the store's cluster / error columns from the bank, by adapter name
    void loadBank(const QString& path);

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
    CompressController* m_compressor;
    std::shared_ptr<const bank::compressed_bank> m_bank;
    bool m_bankUnsaved = false;
    QPointer<EngineJob> m_bankJob; // reading the workspace's bank
};

} // namespace lorafleet::ui
