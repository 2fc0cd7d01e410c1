// Command-line pieces shared by the fleet commands (compress, add): loading adapters named by PATH
// arguments with one stderr line per adapter that failed, and the storage dtype flag.
#pragma once

#include "engine/io/fleet_loader.hpp"
#include "engine/io/safetensors.hpp"

#include <optional>
#include <string>
#include <vector>

namespace lorafleet::cli {

// Loads every adapter under `paths` (checked against `base` when given). Prints each failure as
// "lorafleet-cli COMMAND: error: <reason>" and throws validation_error when any failed, so a fleet is
// never compressed with adapters silently missing.
std::vector<std::shared_ptr<const io::peft_adapter>> load_fleet_or_fail(const std::string& command,
                                                                        const std::vector<std::string>& paths,
                                                                        const io::model_geometry* base);

io::dtype parse_storage_dtype(const std::string& text); // f32, f16, bf16

} // namespace lorafleet::cli
