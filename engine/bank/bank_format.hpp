// The compressed bank on disk (format version 1), a folder:
//   manifest.json                     format, version, method, rank, clusters, storage dtype, base-model
//                                     geometry, creation parameters, modules, adapters (name, source,
//                                     cluster, per-module errors), and every data file's size + SHA-256
//   cores.safetensors                 "<module path>.sigma": [adapters, r, r] (JD-Full) or [adapters, r]
//   bases/cluster-NNN.safetensors     "<module path>.U": [d_out, r] and "<module path>.Vt": [r, d_in]
// Tensors are stored as F32, F16 or BF16 (the manifest's "dtype"); in memory they are float32.
// Writing is atomic for the whole folder: the bank is built in a staging sibling folder
// (".NAME.tmp-<pid>-XXXXXX"), read back through the full validation (bank_validation.hpp), and only
// then swapped in with one rename (RENAME_EXCHANGE when a bank is already there), so readers never see
// half a bank and a failed write leaves the previous bank untouched. A folder that is not a bank is
// never replaced. Staging folders of earlier runs that died are removed at the next write.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/io/safetensors.hpp"

#include <filesystem>
#include <optional>

namespace lorafleet::bank {

constexpr int bank_format_version = 1;

struct bank_write_options {
    io::dtype storage = io::dtype::F16; // F32, F16 or BF16
    bool overwrite = false;             // replace an existing bank at the path
};

struct bank_read_options {
    bool verify_checksums = true; // SHA-256 of every data file against the manifest
    bool load_tensors = true;     // false: manifest and files only (no bases or cores, no value checks)
    std::optional<io::model_geometry> base; // a base model the bank must fit (besides its recorded one)
    bool check = true; // run check_bank() (bank_validation.hpp) on the loaded bank; false: validate_bank
};

// Throws usage_error when write_bank(dir, ..., overwrite) would refuse `dir` (a non-bank, or a bank
// without `overwrite`): call it before the work that produces the bank.
void check_bank_target(const std::filesystem::path& dir, bool overwrite);

// Returns the bytes written (all data files, manifest excluded).
std::uint64_t write_bank(const std::filesystem::path& dir, const compressed_bank& bank,
                         const bank_write_options& options = {});

// Throws format_error (malformed manifest or tensor file, checksum mismatch, missing file, a file that
// is a symlink or not a regular file), shape_mismatch / validation_error (the first problem of
// bank_validation.hpp's rules), unsupported_error (newer format version), io_error.
compressed_bank read_bank(const std::filesystem::path& dir, const bank_read_options& options = {});

// The storage dtype and data-file bytes recorded in a bank's manifest.
struct bank_files_info {
    io::dtype storage = io::dtype::F16;
    std::uint64_t data_bytes = 0;
};
bank_files_info read_bank_files_info(const std::filesystem::path& dir);

} // namespace lorafleet::bank
