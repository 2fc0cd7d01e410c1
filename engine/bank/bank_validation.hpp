// The one validation of a compressed bank. Every reader of banks (bank-info, generate, serve's bank
// provider, the console, add, export-peft) goes through read_bank(), which runs it, so what one of them
// accepts all of them accept, with the same message for the same fault. The rules:
//  - files: the manifest and every data file it lists are regular files INSIDE the bank folder (lstat:
//    no symlink anywhere below the folder, `bases` a real folder), named cores.safetensors or
//    bases/cluster-NNN.safetensors, of the recorded size and SHA-256 (unless checksums are skipped);
//  - manifest vs tensors: every core is [adapters, r, r] (jd-full) or [adapters, r] (jd-diag), every
//    basis [d_out, r] / [r, d_in] as the manifest's rank, method and module shapes say; every adapter's
//    cluster exists, and a cluster an adapter represents a module with has a basis for it;
//  - values: every core and basis value is finite;
//  - names: module paths are dot-separated [A-Za-z0-9_-] components (no "..", no "/"), contain
//    "layers.N" with N = the recorded layer, 0 <= N < io::max_layer_index (io::module_path_problem), and end
//    in the recorded module name; no module repeats; adapter names are folder names
//    (io::adapter_name_problem);
//  - base geometry (the manifest's recorded base, and the one the caller gives, e.g. the served model):
//    every module is a decoder linear of the base with its exact [d_out, d_in] and a layer < num_layers.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/hf_config.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lorafleet::bank {

// The problems of a bank in memory (tensors loaded), in a fixed order; empty when it is good.
// `base`: a geometry the bank must fit, in addition to the one it records.
std::vector<std::string> bank_problems(const compressed_bank& bank,
                                       const std::optional<io::model_geometry>& base = std::nullopt);

// Throws validation_error(where, first problem) when bank_problems() finds any.
void check_bank(const compressed_bank& bank, const std::string& where,
                const std::optional<io::model_geometry>& base = std::nullopt);

// Validates the bank folder `dir` completely (files, checksums unless `verify_checksums` is false,
// manifest, tensors, values, names, geometry). Returns the problems, each one line; empty = good.
// A problem that stops the reading (a missing or tampered file) is the only one returned.
std::vector<std::string> validate_bank(const std::filesystem::path& dir,
                                       const std::optional<io::model_geometry>& base = std::nullopt,
                                       bool verify_checksums = true);

} // namespace lorafleet::bank
