// `lorafleet-cli devices [--json]`: the compute backends this build has and whether each is usable.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/backend/device_registry.hpp"

#include <nlohmann/json.hpp>

#include <iostream>
#include <thread>

namespace lorafleet::cli {
namespace {

int run_devices(const std::vector<std::string>& args) {
    arg_parser p({}, {"json"});
    p.parse(args);
    const auto& cuda = backend::devices();
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    nlohmann::json out;
    out["devices"].push_back({{"backend", "cpu"}, {"available", true}, {"threads", threads}});
    if (!cuda.available) {
        out["devices"].push_back({{"backend", "cuda"}, {"available", false}, {"reason", cuda.reason}});
    } else {
        for (const auto& d : cuda.devices)
            out["devices"].push_back(
                {{"backend", "cuda"},
                 {"available", true},
                 {"index", d.index},
                 {"name", d.name},
                 {"memory_mb", d.memory_mb},
                 {"compute_capability", std::to_string(d.cc_major) + "." + std::to_string(d.cc_minor)}});
    }
    if (p.has("json")) {
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::cout << "cpu   available, " << threads << " threads\n";
    if (!cuda.available) std::cout << "cuda  unavailable: " << cuda.reason << "\n";
    for (const auto& d : cuda.devices)
        std::cout << "cuda  " << d.index << ": " << d.name << ", " << d.memory_mb << " MiB, sm_" << d.cc_major
                  << d.cc_minor << "\n";
    return 0;
}

const command_registrar reg{{"devices", "list compute backends (CPU, CUDA) and whether they are usable",
                             "usage: lorafleet-cli devices [--json]\n", &run_devices}};

} // namespace
} // namespace lorafleet::cli
