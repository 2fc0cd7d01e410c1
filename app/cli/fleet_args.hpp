// Command-line pieces shared by the fleet commands (compress, add): loading adapters named by PATH
// arguments with one stderr line per adapter that failed, and the storage dtype flag.
#pragma once

#include "engine/io/fleet.hpp"
#include "engine/io/fleet_loader.hpp"
#include "engine/io/safetensors.hpp"

#include <optional>
#include <string>
#include <vector>

namespace lorafleet::cli {

// Loads every adapter under `paths` (checked against `base` when given). Each adapter that fails is
// printed as one line, "lorafleet-cli COMMAND: rejected adapter: <reason>", and left out; with `strict`
// (--strict) the lines say "error:" and validation_error is thrown when any failed. Throws
// validation_error as well when no adapter is left.
io::fleet load_fleet_or_fail(const std::string& command,
                                                                        const std::vector<std::string>& paths,
                                                                        const io::model_geometry* base,
                                                                        bool strict = true);

io::dtype parse_storage_dtype(const std::string& text); // f32, f16, bf16

} // namespace lorafleet::cli
