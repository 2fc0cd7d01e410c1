// ImportController: the one way adapters enter the fleet (File > Import Adapters..., drag and drop, opening
// a workspace, the demo and the tests all call importPaths). It runs an ImportJob on a worker through
// EngineHost (status-bar progress and Cancel), drains the job's results every tick (50 ms) into the
// FleetStore in batches, and queues requests that arrive while a job runs, so every folder is imported
// exactly once and duplicates are skipped against everything already in the store. Adapter names are
// unique in the fleet: an adapter whose name is taken is refused or renamed NAME-2 by the duplicate-name
// policy (the report lists them; with DuplicateNames::Ask the console then asks whether to rename).
// Thread affinity: GUI thread.
#pragma once

#include "engine/io/hf_config.hpp"
#include "ui/fleet/import_job.hpp"

#include <QObject>
#include <QPointer>
#include <QStringList>

#include <memory>
#include <optional>

namespace lorafleet::ui {

class EngineHost;
class EngineJob;
class FleetStore;

struct ImportReport {
    QStringList paths;  // what was asked for
    int found = 0;      // adapter folders the search found
    int added = 0;      // rows appended to the store
    int duplicates = 0; // folders skipped because the fleet already had them
    int problems = 0;   // folders (or roots) that failed, now in FleetStore::problems()
    DuplicateNames policy = DuplicateNames::Refuse;
    QStringList refusedNames; // adapters not imported because their name is taken
    QStringList refusedDirs;  // their folders, in the same order
    QStringList renamed;      // "NAME -> NAME-2" for adapters imported under a new name
    bool cancelled = false;
    QString failure; // non-empty when the job itself failed (not one adapter)
    qint64 elapsedMs = 0;

    QString summary() const; // one line for the status bar, e.g. "Imported 200 adapters in 1.2 s"
};

class ImportController : public QObject {
    Q_OBJECT
public:
    ImportController(FleetStore* store, EngineHost* host, QObject* parent = nullptr);
    ~ImportController() override;

    // Base model every later import is checked against (nullopt: shapes are only checked for
    // consistency within each adapter).
    void setBaseModel(std::optional<io::model_geometry> base) { m_base = std::move(base); }
    const std::optional<io::model_geometry>& baseModel() const { return m_base; }

    // What later imports do with adapters whose name the fleet has (default: Ask, i.e. refuse and list).
    void setDuplicateNames(DuplicateNames policy) { m_policy = policy; }
    DuplicateNames duplicateNames() const { return m_policy; }

    // Folders (searched recursively) or adapter_config.json files. Starts at once or after the running
    // import; empty lists are ignored. `policy` overrides duplicateNames() for this request.
    void importPaths(const QStringList& paths, std::optional<DuplicateNames> policy = std::nullopt);
    // The paths of the running import (empty when none).
    QStringList currentPaths() const;
    // Stops the running import after the adapter in progress; what was loaded so far stays. Drops
    // queued requests.
    void cancel();
    // Stops at once and discards undelivered results (used before the fleet is replaced).
    void abort();
    bool isBusy() const { return !m_job.isNull() || !m_pending.isEmpty(); }
    const ImportReport& lastReport() const { return m_lastReport; } // of the last finished import

signals:
    void started(const QStringList& paths);
    void finished(const lorafleet::ui::ImportReport& report);
    void idle(); // the last queued import finished

private:
    void startNext();
    void drain();
    void onFinished();

    FleetStore* m_store;
    EngineHost* m_host;
    std::optional<io::model_geometry> m_base;
    QPointer<EngineJob> m_job;
    std::shared_ptr<ImportJob> m_work;
    ImportReport m_report;
    ImportReport m_lastReport;
    DuplicateNames m_policy = DuplicateNames::Ask;
    QList<std::pair<QStringList, DuplicateNames>> m_pending;
};

} // namespace lorafleet::ui
