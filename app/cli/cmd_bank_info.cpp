// `lorafleet-cli bank-info BANK [--json] [--no-verify]`: what a compressed bank holds (method, rank,
// clusters, modules, adapters, errors, sizes), after the full bank validation (bank_validation.hpp: the
// same one generate, serve, add and the console run), so a bank it describes is one they accept.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <map>

namespace lorafleet::cli {
namespace {

int run_bank_info(const std::vector<std::string>& args) {
    arg_parser p({}, {"json", "no-verify"});
    p.parse(args);
    if (p.positionals().size() != 1) throw usage_error("", "expected exactly one BANK folder");
    const std::filesystem::path dir = p.positionals()[0];
    const auto files = bank::read_bank_files_info(dir);
    bank::bank_read_options options;
    options.verify_checksums = !p.has("no-verify");
    const auto b = bank::read_bank(dir, options);
    std::map<int, int> sizes;
    for (const auto& a : b.adapters)
        ++sizes[a.cluster];

    if (p.has("json")) {
        nlohmann::json out{{"path", dir.string()},
                           {"method", compress::to_string(b.kind)},
                           {"rank", b.rank},
                           {"clusters", b.clusters},
                           {"dtype", std::string(io::dtype_name(files.storage))},
                           {"modules", b.modules.size()},
                           {"bytes_compressed", files.data_bytes},
                           {"mean_error", b.mean_error()},
                           {"max_error", b.max_error()},
                           {"base_model", b.base ? nlohmann::json(b.base->name) : nlohmann::json()},
                           {"parameters", b.parameters}};
        out["cluster_sizes"] = nlohmann::json::array();
        for (int c = 0; c < b.clusters; ++c)
            out["cluster_sizes"].push_back(sizes[c]);
        out["adapters"] = nlohmann::json::array();
        for (const auto& a : b.adapters)
            out["adapters"].push_back({{"name", a.name}, {"cluster", a.cluster}, {"error", a.mean_error()}});
        std::cout << out.dump(2) << "\n";
        return 0;
    }
    std::printf("bank      %s\n", dir.c_str());
    std::printf("method    %s, rank %d, %d cluster%s, stored as %s\n", compress::to_string(b.kind),
                b.rank, b.clusters, b.clusters == 1 ? "" : "s",
                std::string(io::dtype_name(files.storage)).c_str());
    std::printf("base      %s\n", b.base ? b.base->name.c_str() : "(not recorded)");
    std::printf("modules   %zu\n", b.modules.size());
    std::printf("adapters  %zu\n", b.adapters.size());
    std::printf("size      %.2f MB (%s)\n", double(files.data_bytes) / 1e6,
                p.has("no-verify") ? "checksums not verified" : "checksums verified");
    std::printf("error     mean %.4f, max %.4f (squared relative Frobenius)\n", b.mean_error(),
                b.max_error());
    std::printf("clusters ");
    for (int c = 0; c < b.clusters; ++c)
        std::printf(" %d:%d", c, sizes[c]);
    std::printf("\n");
    return 0;
}

const command_registrar reg{{"bank-info", "describe a compressed bank (method, clusters, errors, size)",
                             "usage: lorafleet-cli bank-info BANK [--json] [--no-verify]\n"
                             "  --no-verify  skip the SHA-256 check of the bank's data files\n",
                             &run_bank_info}};

} // namespace
} // namespace lorafleet::cli
