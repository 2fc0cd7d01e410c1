// Uploading a compressed bank for device serving (method.md §7): per bank module, every cluster's U_c and
// V_cᵀ and every adapter's core go to the device once (kernels::device_bank); a step then needs only the
// tokens' slots. Slots are the bank's adapter order, exactly as BankDelta numbers them, so one slot
// vector drives both the CPU and the device path. Checks the bank against the base model like BankDelta
// (shape_mismatch naming the module). Plain function; the returned object belongs to the caller's thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/hf_config.hpp"
#include "kernels/serve_device_model.hpp"

#include <memory>
#include <string>

namespace lorafleet::serve {

// Throws shape_mismatch for a bank that does not fit `base`, backend_unavailable when the device refuses.
// The bases are stored in `precision` (bf16 unless LORAFLEET_DEVICE_PRECISION says otherwise), cores fp32.
std::unique_ptr<kernels::device_bank> upload_bank(const bank::compressed_bank& bank,
                                                  const io::model_geometry& base, const std::string& where,
                                                  kernels::device_precision precision);
std::unique_ptr<kernels::device_bank> upload_bank(const bank::compressed_bank& bank,
                                                  const io::model_geometry& base, const std::string& where);

// The same from a bank whose adapters live elsewhere (BankDelta keeps them per slot): the modules, bases,
// kind and rank of `shape` (its adapters and cores are ignored), `cores` [modules] -> [slots, core_size]
// in the bank's layout (zeros for a module a slot lacks), `slot_cluster` [slots].
std::unique_ptr<kernels::device_bank> upload_bank(const bank::compressed_bank& shape,
                                                  const std::vector<std::vector<float>>& cores,
                                                  const std::vector<int>& slot_cluster,
                                                  const io::model_geometry& base, const std::string& where,
                                                  kernels::device_precision precision);

} // namespace lorafleet::serve
