// Adding adapters to an existing bank without refitting (method.md §6): each adapter is projected onto
// every cluster's bases (Σ_c = U_cᵀ·(s·B·A)·V_c per module) and joins the cluster with the lowest exact
// reconstruction error. The one place this happens: `lorafleet-cli add` (add_to_bank, then write_bank)
// and the serving engine's live add (BankDelta::prepare_add: project_onto_bank, which leaves the bank
// untouched) both go through the same projection (bank_builder's add_adapters), so the same adapter gets
// the same Σ, cluster and error either way.
// The caller chooses where the projection runs by the backend it passes (engine/backend's
// make_compress_backend); the bank layer itself knows no device.
// Thread affinity: any thread. add_to_bank mutates `bank` (not synchronized); project_onto_bank only
// reads it and may run concurrently with other readers. A backend must not be shared between threads.
#pragma once

#include "engine/bank/bank_builder.hpp"
#include "engine/bank/compressed_bank.hpp"
#include "engine/compress/compress_backend.hpp"
#include "engine/io/fleet.hpp"

#include <memory>
#include <vector>

namespace lorafleet::bank {

// Projects every adapter of `adapters` onto `bank`'s bases and appends them to `bank` (in memory), in
// order; `threads` reads the adapters' modules (0 = hardware threads). Nothing is appended when any adapter
// fails: validation_error for a name the bank (or an earlier adapter of the list) already has, or an
// adapter none of whose modules the bank knows; shape_mismatch when a module's shape disagrees.
std::vector<added_adapter> add_to_bank(compressed_bank& bank, const io::fleet& adapters,
                                       compress::CompressBackend& backend, int threads = 1);

// One adapter projected onto a bank and not (yet) in it.
struct projected_adapter {
    bank_adapter adapter;                  // name, source, cluster, per-module errors
    std::vector<std::vector<float>> cores; // [bank module] the bank's layout (core_size floats), empty where
                                           // the adapter lacks the module or the bank does not have it
    added_adapter summary;                 // cluster, mean error, the adapter's modules the bank lacks
};

// Projects `adapter` onto `bank`'s bases exactly as add_to_bank would (same Σ), without changing `bank`.
// `name` overrides the adapter's own (folder) name when not empty. Errors as add_to_bank.
projected_adapter project_onto_bank(const compressed_bank& bank,
                                    std::shared_ptr<const io::peft_adapter> adapter,
                                    compress::CompressBackend& backend, const std::string& name = {});

} // namespace lorafleet::bank
