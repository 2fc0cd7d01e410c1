// The compressed bank on disk (format version 1), a folder:
//   manifest.json                     format, version, method, rank, clusters, storage dtype, base-model
//                                     geometry, creation parameters, modules, adapters (name, source,
//                                     cluster, per-module errors), and every data file's size + SHA-256
//   cores.safetensors                 "<module path>.sigma": [adapters, r, r] (JD-Full) or [adapters, r]
//   bases/cluster-NNN.safetensors     "<module path>.U": [d_out, r] and "<module path>.Vt": [r, d_in]
// The manifest may carry an optional "quality" section (per-adapter agreement, compressed_bank.hpp) that
// readers which do not know it ignore; it is not a data file and has no checksum.
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
#include <string>
#include <vector>

namespace lorafleet::bank {

// Version 2 adds "raw_adapters" (hybrid serving, compressed_bank::raw_adapters); a bank without raw
// adapters is still written as version 1, so older readers keep reading it. Version-1 banks are read by
// the version-1 rules (no raw adapters).
constexpr int bank_format_version = 2;

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

// Stores `quality` as the manifest's optional "quality" section (replacing any earlier one), leaving the
// data files as they are: the manifest alone is rewritten atomically (temporary file + rename). Throws
// what read_bank throws for a folder that is not a bank, usage_error for an adapter the bank lacks.
void write_bank_quality(const std::filesystem::path& dir, const quality_section& quality);

// Rewrites only the manifest, atomically as write_bank_quality does: the quality section when `quality`
// is given, the list of adapters served raw when `raw_adapters` is given (format version 2 when it names
// any, version 1 when it is empty). usage_error for a name the bank lacks or a raw name given twice.
struct bank_manifest_update {
    std::optional<quality_section> quality;
    std::optional<std::vector<std::string>> raw_adapters;
};
void update_bank_manifest(const std::filesystem::path& dir, const bank_manifest_update& update);

// The storage dtype and data-file bytes recorded in a bank's manifest.
struct bank_files_info {
    io::dtype storage = io::dtype::F16;
    std::uint64_t data_bytes = 0;
};
bank_files_info read_bank_files_info(const std::filesystem::path& dir);

} // namespace lorafleet::bank
