// ImportJob: the worker half of an adapter import. Given the folders (or adapter_config.json files) the
// operator chose, it searches each recursively (io::find_adapter_dirs), skips folders already in the
// fleet or seen earlier in this import, loads and validates the rest (io::load_peft_adapter, against
// the workspace's base model when one is set) and pushes each outcome into a queue the GUI drains in
// batches: a FleetEntry (adapter + summary) or an ImportProblem with a one-line reason. A failure never
// stops the rest. Cancellation is checked between adapters. Adapter names are unique in a fleet (the bank
// and the views key on them): an adapter whose name is already in the fleet (or earlier in this import)
// is refused (listed in nameClashes()) or renamed NAME-2, NAME-3, ... by the policy.
// Thread affinity: run() on the EngineJob's worker thread; the queues and counters are thread-safe and
// are read on the GUI thread. Everything else is written before the job starts and read-only after.
#pragma once

#include "engine/io/hf_config.hpp"
#include "ui/common/batch_queue.hpp"
#include "ui/fleet/fleet_entry.hpp"

#include <QStringList>

#include <atomic>
#include <optional>
#include <string>
#include <unordered_set>

namespace lorafleet::ui {

class JobContext;

// What an import does with an adapter whose name the fleet already has.
enum class DuplicateNames {
    Refuse, // not imported; listed in the report
    Rename, // imported as NAME-2 (or the first free NAME-k)
    Ask,    // as Refuse, and the console asks whether to import them renamed
};

class ImportJob {
public:
    struct NameClash {
        QString dir;
        QString name;    // the adapter's name
        QString renamed; // the name it got ("" when refused)
    };

    ImportJob(QStringList paths, std::unordered_set<std::string> knownKeys,
              std::optional<io::model_geometry> base, std::unordered_set<std::string> knownNames = {},
              DuplicateNames policy = DuplicateNames::Refuse);

    void run(JobContext& context); // worker thread

    BatchQueue<FleetEntry>& loaded() { return m_loaded; }
    BatchQueue<ImportProblem>& problems() { return m_problems; }
    BatchQueue<NameClash>& nameClashes() { return m_clashes; }
    int duplicates() const { return m_duplicates.load(); }
    int found() const { return m_found.load(); } // adapter folders found by the search
    const QStringList& paths() const { return m_paths; }

    // Canonical identity and display path of a folder (also used by the GUI side). Any thread.
    static QString keyOf(const QString& dir);
    static QString cleanDir(const QString& dir);

private:
    QStringList m_paths;
    std::unordered_set<std::string> m_seen;  // worker-only after start
    std::unordered_set<std::string> m_names; // likewise
    DuplicateNames m_policy;
    std::optional<io::model_geometry> m_base;
    BatchQueue<FleetEntry> m_loaded;
    BatchQueue<ImportProblem> m_problems;
    BatchQueue<NameClash> m_clashes;
    std::atomic<int> m_duplicates{0};
    std::atomic<int> m_found{0};
};

} // namespace lorafleet::ui
