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
// is "unsaved": the workspace is marked modified) or by opening a workspace whose bank path holds a bank
// (read on a worker; a bank that cannot be read is reported and left out). Save / Save As of NAME.lorafleet
// writes the bank to NAME.bank beside it (atomically, by the engine's bank writer) when it is unsaved or
// the workspace's bank is elsewhere, and never writes any other bank; File > Export Bank writes a copy and
// never changes where the workspace's bank is.
//
// The bank is "stale" when the fleet changed after it was made: an adapter is in the bank when its name
// is in the bank and it was in the fleet when the bank was made or read (an adapter imported later is
// not, whatever its name); bankStaleness() counts adapters not in the bank and bank adapters no longer in
// the fleet. Every time the bank or the fleet changes, the store's cluster / error columns are set from
// the bank for the adapters in it and blanked for the others.
//
// Fleet changes the operator makes are safe: imports are refused while a compression runs; adapter names
// are unique (ImportController's duplicate-name policy); removals go on undoStack() (Edit > Undo brings
// them back). Adapters under a temporary root (the demo's generated fleet) are copied to NAME.adapters/
// beside the workspace when it is saved, so the saved workspace outlives the temporary folder.
// Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "ui/fleet/import_job.hpp"

#include <QObject>
#include <QPointer>
#include <QSet>
#include <QStringList>

#include <memory>

class QUndoStack;

namespace lorafleet::ui {

class CompressController;
class EngineHost;
class EngineJob;
class FleetStore;
class ImportController;
class Workspace;
struct FleetEntry;
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
    QUndoStack* undoStack() const { return m_undo; } // fleet removals (cleared by New / Open)

    // The current bank; null before any compression (or after New).
    std::shared_ptr<const bank::compressed_bank> bank() const { return m_bank; }
    // Replaces the bank and applies its clusters and errors to the store. `unsaved`: the bank exists
    // only in memory (a new compression), so the workspace is marked modified and Save writes it.
    void setBank(std::shared_ptr<const bank::compressed_bank> bank, bool unsaved = false);
    bool isBankUnsaved() const { return m_bank && m_bankUnsaved; }
    // Where Save puts the bank of a workspace saved at `workspacePath`: "<folder>/<base name>.bank".
    static QString bankPathFor(const QString& workspacePath);
    // Where Save copies adapters under a temporary root: "<folder>/<base name>.adapters".
    static QString adapterFolderFor(const QString& workspacePath);

    // Whether the fleet changed since the bank was made (both 0 without a bank, and while a workspace
    // is being opened).
    struct BankStaleness {
        int added = 0;   // adapters in the fleet that are not in the bank
        int removed = 0; // adapters of the bank no longer in the fleet
        bool isStale() const { return added > 0 || removed > 0; }
    };
    BankStaleness bankStaleness() const;
    // "" when the bank is up to date (or there is none); else e.g. "The bank is out of date: 50 adapters
    // added, 0 removed since it was compressed".
    QString bankStalenessText() const;
    bool isInBank(const FleetEntry& entry) const;

    // Adapters under `dir` are copied beside the workspace when it is saved (the demo's fleet).
    void addTemporaryAdapterRoot(const QString& dir);
    bool isLoadingBank() const { return !m_bankJob.isNull(); }

    // An empty untitled workspace (running imports are abandoned). The caller asks about unsaved
    // changes first.
    void newWorkspace();
    // Reads `path`; on success replaces the document and the fleet and starts importing its adapters
    // (returns before they are loaded: wait for idle()). On failure nothing changes and `error` says why.
    bool openWorkspace(const QString& path, QString* error);
    // Copies adapters under temporary roots to adapterFolderFor(path), writes the bank to
    // bankPathFor(path) when needed (see above), then the workspace file (atomically), in that order, so
    // a crash at any point leaves the previous workspace file and what it points to readable. On any
    // failure the workspace is not marked saved and `error` says why.
    bool saveWorkspace(const QString& path, QString* error);
    // A preset name, a config.json / model folder, or "" for none; applies to later imports. False (and
    // nothing changes) when it cannot be resolved.
    bool setBaseModel(const QString& baseModel, QString* error);

    // Refused (false, with `error`; nothing queued) while a compression runs.
    bool importPaths(const QStringList& paths, QString* error = nullptr);
    bool importPaths(const QStringList& paths, DuplicateNames policy, QString* error = nullptr);
    // Removes the rows as one undoable step ("Remove N adapters" on undoStack()).
    void removeRows(const QList<int>& storeRows);
    // Forgets the listed problems; folders that came from the workspace are dropped from it too.
    void dismissProblems();
    bool isBusy() const; // an import, a bank being read or a compression is running

signals:
    void operationFinished(const QString& text); // one line for the status bar
    void idle();                                 // the last running import finished
    void bankChanged();                          // bank() was replaced (possibly by null)
    void bankStateChanged();                     // bankStaleness() may have changed
    void workspaceReset();                       // New / Open cleared everything: views start afresh

private:
    friend class RemoveAdaptersCommand;
    void onRowsInserted(int first, int last);
    bool isInBank(const FleetEntry& entry, const QSet<QString>& bankNames) const;
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
    QSet<quint64> m_notInBank;     // serials of entries added after the bank was made
    bool m_restoring = false;      // an undo is putting entries back
    QStringList m_temporaryRoots;
    QUndoStack* m_undo;
};

} // namespace lorafleet::ui
