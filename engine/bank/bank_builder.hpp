// Conversions between the compressor's result (column-major matrices, [cluster][module] bases) and the
// compressed bank (row-major float32, [module][cluster] bases, cores packed per module), and the
// incremental addition of adapters to a bank (method.md §6: projection onto the existing bases).
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/peft_module_source.hpp"

#include <optional>
#include <string>
#include <vector>

namespace lorafleet::bank {

struct adapter_record {
    std::string source;     // folder the adapter came from
    std::string base_model; // its base_model_name_or_path
    int source_rank = 0;
};

// `records` are per adapter of the result, in order. `parameters` go to the manifest as they are.
compressed_bank bank_from_result(const compress::compression_result& result,
                                 const std::vector<adapter_record>& records,
                                 std::optional<io::model_geometry> base, nlohmann::json parameters);

// The bases of a bank in the compressor's form (cores and errors are not needed for projection).
compress::compression_result result_from_bank(const compressed_bank& bank);

struct added_adapter {
    std::string name;
    int cluster = -1;
    double error = 0.0;                       // mean over its modules in the chosen cluster
    std::vector<std::string> ignored_modules; // modules the bank does not have (not representable)
};

// Projects every adapter of `source` onto the bank's bases and appends it to `bank` (in memory).
// Throws validation_error for a name the bank already has, or an adapter none of whose modules the bank
// knows; shape_mismatch when a module's shape disagrees with the bank's.
std::vector<added_adapter> add_adapters(compressed_bank& bank, compress::PeftModuleSource& source,
                                        compress::CompressBackend& backend);

} // namespace lorafleet::bank
