// Which of the workspace's adapters the Serve tab serves: all of them, the Fleet table's selection, or
// the members of one cluster of the workspace's compressed bank; applied to the bank (compressed mode:
// a copy of the bank that holds only the chosen adapters) or to the imported adapters (raw mode: their
// PEFT folders). Adapters are identified by name (io::peft_adapter::name, the bank's adapter name;
// unique in a workspace and in a bank).
// Pure functions, any thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "ui/fleet/fleet_entry.hpp"

#include <QStringList>

#include <memory>
#include <vector>

namespace lorafleet::ui {

struct AdapterChoice {
    enum class Subset { All, Selection, Cluster };
    Subset subset = Subset::All;
    QStringList selection; // Selection: the chosen adapter names
    int cluster = -1;      // Cluster: the bank's cluster index
};

// Names of the bank's adapters the choice keeps, in bank order.
QStringList chooseFromBank(const bank::compressed_bank& bank, const AdapterChoice& choice);

// A copy of `bank` holding only the adapters named in `names` (their cores, errors and clusters; the
// shared bases as they are). Names the bank lacks are ignored. The result validates.
std::shared_ptr<const bank::compressed_bank> bankSubset(const bank::compressed_bank& bank,
                                                        const QStringList& names);

// Folders of the fleet's adapters the choice keeps, in fleet order. Cluster: the adapters whose cluster
// in `bank` is the chosen one (an adapter the bank does not hold is in no cluster); no bank, no adapter.
QStringList chooseFolders(const std::vector<FleetEntry>& fleet, const AdapterChoice& choice,
                          const bank::compressed_bank* bank);

// Members per cluster of the bank (index = cluster).
std::vector<int> clusterSizes(const bank::compressed_bank& bank);

} // namespace lorafleet::ui
