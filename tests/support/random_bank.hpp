// A small random compressed bank with every corner the format has: 3 modules (one GQA-shaped, d_out 8),
// 3 clusters, 6 adapters; adapter 5 lacks module 2 and cluster 2 has no member with module 2, so its
// basis there is empty. Deterministic for a seed.
#pragma once

#include "engine/bank/compressed_bank.hpp"

namespace lorafleet::test {

bank::compressed_bank make_random_bank(bank::method kind, unsigned seed);

} // namespace lorafleet::test
