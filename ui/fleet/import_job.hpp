// ImportJob: the worker half of an adapter import. Given the folders (or adapter_config.json files) the
// operator chose, it searches each recursively (io::find_adapter_dirs), skips folders already in the
// fleet or seen earlier in this import, loads and validates the rest (io::load_peft_adapter, against
// the workspace's base model when one is set) and pushes each outcome into a queue the GUI drains in
// batches: a FleetEntry (adapter + summary) or an ImportProblem with a one-line reason. A failure never
// stops the rest. Cancellation is checked between adapters.
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

class ImportJob {
public:
    ImportJob(QStringList paths, std::unordered_set<std::string> knownKeys,
              std::optional<io::model_geometry> base);

    void run(JobContext& context); // worker thread

    BatchQueue<FleetEntry>& loaded() { return m_loaded; }
    BatchQueue<ImportProblem>& problems() { return m_problems; }
    int duplicates() const { return m_duplicates.load(); }
    int found() const { return m_found.load(); } // adapter folders found by the search
    const QStringList& paths() const { return m_paths; }

    // Canonical identity and display path of a folder (also used by the GUI side). Any thread.
    static QString keyOf(const QString& dir);
    static QString cleanDir(const QString& dir);

private:
    QStringList m_paths;
    std::unordered_set<std::string> m_seen; // worker-only after start
    std::optional<io::model_geometry> m_base;
    BatchQueue<FleetEntry> m_loaded;
    BatchQueue<ImportProblem> m_problems;
    std::atomic<int> m_duplicates{0};
    std::atomic<int> m_found{0};
};

} // namespace lorafleet::ui
