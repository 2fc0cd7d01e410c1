// Loads many PEFT adapters at once: every PATH is an adapter folder or a folder searched recursively
// (find_adapter_dirs); folders are loaded on a few threads; an adapter that fails to load is reported
// with its one-line reason and does not stop the others. Results keep the sorted folder order.
#pragma once

#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::io {

struct fleet_load_failure {
    std::filesystem::path dir;
    std::string reason; // the error's full one-line message (names the file)
};

struct fleet_load_result {
    fleet adapters;
    std::vector<fleet_load_failure> failures;
};

// `progress(done, total)` is called from the calling thread; returning false cancels (cancelled_error).
// Throws io_error / validation_error from find_adapter_dirs (a PATH that does not exist or holds none).
fleet_load_result load_fleet(const std::vector<std::filesystem::path>& paths,
                             const peft_load_options& options = {}, int threads = 0,
                             const std::function<bool(std::size_t, std::size_t)>& progress = {});

} // namespace lorafleet::io
