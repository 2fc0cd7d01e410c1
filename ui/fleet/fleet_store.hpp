// FleetStore: the fleet the console works on. It owns the loaded adapters (shared_ptr, immutable) in
// import order, the list of folders that failed to import, and per-adapter results of later stages
// (cluster, relative error). It knows nothing about widgets: FleetModel and ProblemModel present it,
// the compression panel reads adapters() and writes setClusters() / setErrors().
//
// Invariants: no two entries share a key (canonical folder path); every entry's adapter is non-null;
// rows are indices into entries() and change only through the signals below, which bracket every
// change (about-to / done) so item models can forward them as begin/end pairs.
// Thread affinity: GUI thread only (workers hand results over through ImportController).
#pragma once
#include "engine/io/fleet.hpp"

#include "ui/fleet/fleet_entry.hpp"

#include <QHash>
#include <QObject>

#include <optional>
#include <span>
#include <unordered_set>
#include <vector>

namespace lorafleet::ui {

class FleetStore : public QObject {
    Q_OBJECT
public:
    explicit FleetStore(QObject* parent = nullptr);

    int size() const { return int(m_entries.size()); }
    bool isEmpty() const { return m_entries.empty(); }
    const FleetEntry& entry(int row) const { return m_entries.at(std::size_t(row)); }
    const std::vector<FleetEntry>& entries() const { return m_entries; }
    bool containsKey(const QString& key) const;
    int rowOfKey(const QString& key) const;       // -1 when absent (linear scan)
    std::unordered_set<std::string> keys() const; // snapshot for a worker's duplicate check
    QStringList dirs() const;                     // every entry's folder, in row order
    quint64 totalFileBytes() const { return m_totalBytes; }
    // Bytes of every adapter's LoRA A and B tensors (peft_adapter::weight_bytes): the "original" size the
    // Compress tab compares with the bank.
    quint64 totalWeightBytes() const { return m_totalWeightBytes; }

    // The loaded adapters in row order: what the compressor consumes. The pointers stay valid (and
    // the weights mapped) for as long as the caller holds them, even after removal from the store.
    io::fleet adapters() const;

    // Appends entries whose key is new (others are dropped and counted in the return value's second).
    // One insertion signal pair for the whole batch. Returns {added, duplicates}.
    std::pair<int, int> append(std::vector<FleetEntry> entries);
    // Removes the given rows (any order, duplicates allowed): one signal pair per contiguous run, or one
    // reset when the rows form more than kMaxRemovalRuns runs (cheaper for views than hundreds of
    // removals). Either way adaptersRemoved() follows with the removed folders.
    static constexpr std::size_t kMaxRemovalRuns = 32;
    void removeRows(QList<int> rows);
    // Puts entries removed earlier back at their former rows (Edit > Undo): `rows` ascending, each the row
    // the entry had; entries whose key is in the store again are skipped. One signal pair per contiguous
    // run (or one reset past kMaxRemovalRuns). Returns the number restored.
    int restore(std::vector<std::pair<int, FleetEntry>> rows);
    // Moves entries to new folders (the demo's adapters copied beside a saved workspace): `newDirs` maps
    // an entry's old dir to its new {dir, key}. Results and rows are unchanged.
    void relocate(const QHash<QString, std::pair<QString, QString>>& newDirs);
    void clear(); // entries and problems

    // Per-adapter results of the compressor, matched by adapter identity (the pointer from adapters()),
    // so a result computed on a snapshot still lands on the right rows after removals. Unset optionals
    // leave a field unchanged; adapters no longer in the store are ignored. One change signal in all.
    struct AdapterResult {
        const io::peft_adapter* adapter = nullptr;
        std::optional<int> cluster;  // >= 0, or -1 to blank it
        std::optional<double> error; // the bank's mean squared relative error ||dW - dW'||^2 / ||dW||^2
                                     // over the adapter's modules (as the CLI reports), NaN to blank it
    };
    void setResults(std::span<const AdapterResult> results);
    void clearResults(); // clusters and errors back to blank

    const QList<ImportProblem>& problems() const { return m_problems; }
    void addProblems(const QList<ImportProblem>& problems); // replaces earlier problems of the same folder
    void clearProblems();

signals:
    void rowsAboutToBeInserted(int first, int last);
    void rowsInserted(int first, int last);
    void rowsAboutToBeRemoved(int first, int last);
    void rowsRemoved(int first, int last);
    void aboutToReset();
    void resetDone();
    void adaptersRemoved(const QStringList& dirs); // after removeRows (not clear): the folders that left
    void resultsChanged(int first, int last);      // cluster / error of rows first..last
    void problemsAboutToChange();
    void problemsChanged();
    void fleetChanged(); // after any change of the entry list (not results): for counters and titles

private:
    std::vector<FleetEntry> m_entries;
    std::unordered_set<std::string> m_keys;
    quint64 m_totalBytes = 0;
    quint64 m_totalWeightBytes = 0;
    QList<ImportProblem> m_problems;
    quint64 m_nextSerial = 1;
};

} // namespace lorafleet::ui
