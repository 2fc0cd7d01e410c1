// A planted fleet (planted_fleet.hpp: groups with their own subspaces, seed 7) compressed by the engine's
// CPU backend at `rank` into `groups` clusters and turned into a bank in memory, so its clusters are the
// planted groups. `labels` (optional) receives each adapter's planted group. For the cluster-map and
// Clusters-tab tests.
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <cstdint>
#include <vector>

namespace lorafleet::test {

bank::compressed_bank planted_bank(int groups, int per_group, std::int64_t rank,
                                   std::vector<int>* labels = nullptr, double noise = 0.0);

} // namespace lorafleet::test
