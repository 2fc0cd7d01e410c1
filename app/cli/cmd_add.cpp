// `lorafleet-cli add BANK ADAPTER... [--json]`: adds adapters to an existing bank without refitting,
// by projecting them onto every cluster's bases and keeping the best cluster (method.md §6). The bank
// is rewritten atomically in its storage dtype: the new bank is written beside the old one, read back
// through the bank validation and only then exchanged with it (write_bank), so BANK always holds a
// complete bank. Adapters that cannot be loaded are rejected with one line each (--strict: the run fails).
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "app/cli/fleet_args.hpp"
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/bank_add.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

namespace lorafleet::cli {
namespace {

int run_add(const std::vector<std::string>& args) {
    arg_parser p({"device", "threads"}, {"json", "strict"});
    p.parse(args);
    if (p.positionals().size() < 2) throw usage_error("", "expected BANK and at least one ADAPTER");
    const std::filesystem::path dir = p.positionals()[0];
    const std::vector<std::string> paths(p.positionals().begin() + 1, p.positionals().end());
    const int threads = int(p.get_int("threads", 0, 0, 1024));
    auto backend = lorafleet::backend::make_compress_backend(p.get_or("device", "auto"), threads);

    const auto storage = bank::read_bank_files_info(dir).storage;
    auto b = bank::read_bank(dir);
    const auto adapters = load_fleet_or_fail("add", paths, b.base ? &*b.base : nullptr, p.has("strict"));
    // The projection the serving engine's live add uses too (bank_add.hpp).
    const auto added = bank::add_to_bank(b, adapters, *backend, threads);
    bank::write_bank(dir, b, {storage, true});

    if (p.has("json")) {
        nlohmann::json j = nlohmann::json::array();
        for (const auto& a : added)
            j.push_back({{"name", a.name},
                         {"cluster", a.cluster},
                         {"error", a.error},
                         {"ignored_modules", a.ignored_modules}});
        std::cout
            << nlohmann::json{{"bank", dir.string()}, {"added", j}, {"adapters", b.adapters.size()}}.dump(2)
            << "\n";
        return 0;
    }
    for (const auto& a : added) {
        std::printf("added %s to cluster %d, error %.4f\n", a.name.c_str(), a.cluster, a.error);
        if (!a.ignored_modules.empty())
            std::printf("  note: %zu module(s) not in the bank were ignored (first: %s)\n",
                        a.ignored_modules.size(), a.ignored_modules.front().c_str());
    }
    std::printf("bank %s now holds %zu adapters\n", dir.c_str(), b.adapters.size());
    return 0;
}

const command_registrar reg{
    {"add", "add adapters to a bank by projection onto its bases (no refit)",
     "usage: lorafleet-cli add BANK ADAPTER... [--json] [--strict] [--device auto|cpu|cuda]\n"
     "  --strict  fail when any adapter is rejected (default: skip it with one line)\n",
     &run_add}};

} // namespace
} // namespace lorafleet::cli
