// Rebuilds standard PEFT LoRA adapters from a compressed bank, for engines that do not read banks
// (vLLM, HF PEFT): per module A' = V_cᵀ [r, d_in] (shared by the cluster) and B' = U_c Σ_i [d_out, r],
// with r = lora_alpha = the bank's rank so PEFT's scale alpha / r is 1 and s·B'·A' = U_c Σ_i V_cᵀ exactly
// the bank's reconstruction. One folder per adapter, named like its source.
// The whole export is staged in a folder beside `out` (".OUT.tmp-<pid>-XXXXXX") and renamed into place
// only when every adapter is written, so `out` never holds a partial export: an existing `out` is
// replaced (atomically, by exchange) only with `overwrite` and only when it is empty or holds nothing
// but PEFT adapter folders; otherwise usage_error before any work.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/safetensors.hpp"

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace lorafleet::bank {

struct peft_export_options {
    std::vector<std::string> adapters;  // names to export; empty = all
    io::dtype weights = io::dtype::F32; // F32, F16 or BF16
    bool overwrite = false;             // replace an existing export at `out` (as a whole)
    std::function<bool(std::size_t done, std::size_t total)> progress; // return false to cancel
};

// usage_error when export_peft_adapters(..., out, overwrite) would refuse `out`: call before the work.
void check_export_target(const std::filesystem::path& out, bool overwrite);

// Returns the folders written. usage_error for an unknown adapter name (before anything is written).
std::vector<std::filesystem::path> export_peft_adapters(const compressed_bank& bank,
                                                        const std::filesystem::path& out,
                                                        const peft_export_options& options = {});

} // namespace lorafleet::bank
