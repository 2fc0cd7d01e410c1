// One call from loaded PEFT adapters to a compressed bank in memory: the steps that the CLI's
// `compress` and the console's compression panel share (unique names, the streaming module source,
// compress_fleet, per-adapter records, creation parameters, bank_from_result, original weight bytes).
// Nothing is written to disk here; write_bank() does that. Any thread; the adapters are only read.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace lorafleet::bank {

struct fleet_bank {
    compressed_bank bank;
    compress::compression_result result; // the compressor's own result (k trials, timing, ...)
    std::uint64_t bytes_original = 0;    // bytes of every adapter's A and B tensors as stored
};

// Throws validation_error naming the folder when two adapters share a name (names are unique in a bank).
void check_unique_adapter_names(const io::fleet& adapters);

// The manifest's creation parameters of a compression with `options` on `backend_name`.
nlohmann::json compression_parameters(const compress::compress_options& options,
                                      const std::string& backend_name);

// Compresses `adapters` (in this order; the bank's adapter i is adapters[i]). `threads` converts modules
// in parallel (0 = all). Throws what compress_fleet throws (cancelled_error when `progress` returns false)
// and validation_error for repeated names.
fleet_bank compress_adapters_to_bank(const io::fleet& adapters,
                                     compress::CompressBackend& backend,
                                     const compress::compress_options& options,
                                     std::optional<io::model_geometry> base, int threads = 0,
                                     const compress::progress_callback& progress = {});

} // namespace lorafleet::bank
