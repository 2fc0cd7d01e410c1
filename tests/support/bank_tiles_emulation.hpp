// The device's compressed-bank update run on the CPU with the kernels' own bodies (kernels/bank_tiles.hpp):
// emulate_bank_apply does launch_bank_apply's two kernels (grid loops outside, a block's threads inside
// each phase between barriers, shared memory and workspaces NaN-filled so a read before a write shows);
// emulate_bank_module adds what kernels::device_bank does around it for one module of a bank (adapted
// tokens stably sorted by cluster, tiles planned, the cluster bases packed as the device holds them, zeros
// for a cluster without a basis). Tests compare these with the engine's CPU code and with references.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "kernels/serve_kernels.hpp"

#include <cstddef>
#include <vector>

namespace lorafleet::test {

void emulate_bank_apply(const kernels::bank_module_view& module, const kernels::adapted_tokens& tokens,
                        const float* x, float* y);

// y [n, d_out] += the update of bank module m for tokens t with token_slot[t] >= 0 (x [n, d_in]).
void emulate_bank_module(const bank::compressed_bank& bank, std::size_t m, const std::vector<int>& token_slot,
                         const float* x, float* y, int n);

} // namespace lorafleet::test
