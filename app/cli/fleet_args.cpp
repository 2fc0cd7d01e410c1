#include "app/cli/fleet_args.hpp"

#include "engine/core/error.hpp"
#include "engine/io/fleet.hpp"

#include <iostream>

namespace lorafleet::cli {

io::fleet load_fleet_or_fail(const std::string& command,
                                                                        const std::vector<std::string>& paths,
                                                                        const io::model_geometry* base,
                                                                        bool strict) {
    if (paths.empty()) throw usage_error("", "give at least one adapter folder (or a folder of adapters)");
    std::vector<std::filesystem::path> fs_paths(paths.begin(), paths.end());
    io::peft_load_options options;
    options.base = base;
    auto last_print = std::chrono::steady_clock::now();
    auto result = io::load_fleet(fs_paths, options, 0, [&](std::size_t done, std::size_t total) {
        const auto now = std::chrono::steady_clock::now();
        if (total >= 50 && now - last_print > std::chrono::seconds(1)) {
            std::cerr << command << ": loading adapters " << done << "/" << total << "\n";
            last_print = now;
        }
        return true;
    });
    for (const auto& f : result.failures)
        std::cerr << "lorafleet-cli " << command << (strict ? ": error: " : ": rejected adapter: ")
                  << f.reason << "\n";
    if (!result.failures.empty() && (strict || result.adapters.empty()))
        throw validation_error("", std::to_string(result.failures.size()) + " of " +
                                       std::to_string(result.failures.size() + result.adapters.size()) +
                                       " adapters could not be loaded (listed above)");
    return std::move(result.adapters);
}

io::dtype parse_storage_dtype(const std::string& text) {
    if (text == "f32") return io::dtype::F32;
    if (text == "f16") return io::dtype::F16;
    if (text == "bf16") return io::dtype::BF16;
    throw usage_error("", "--dtype must be f32, f16 or bf16, got '" + text + "'");
}

} // namespace lorafleet::cli
