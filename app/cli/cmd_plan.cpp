// `lorafleet-cli plan`: a capacity plan before serving (engine/quality/capacity_plan.hpp): the weights, KV
// bytes per token, raw and compressed adapter bytes, how many adapters fit resident raw vs compressed in a
// memory budget, the KV left (concurrent sequences at a length), and predicted tokens/s per mode from a
// step-time model measured on this machine (kept in a small cache file; --remeasure measures again).
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/quality/bank_evaluation.hpp"
#include "engine/quality/capacity_plan.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"
#include "engine/serve/model/model_weights.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

namespace lorafleet::cli {
namespace {

namespace fs = std::filesystem;

const char* usage_text =
    "usage: lorafleet-cli plan --model DIR (--bank BANK | --adapters DIR...) [--device cpu|cuda]\n"
    "                          [--memory-gb G] [--concurrency C] [--prompt-tokens P] [--max-tokens T]\n"
    "                          [--sequence-tokens L] [--threads N] [--remeasure] [--cache FILE] [--json]\n"
    "\n"
    "How many adapters fit and how fast serving will be, before serving: the weights, KV bytes per token,\n"
    "raw and compressed adapter bytes, adapters resident raw vs compressed in the budget, the KV left\n"
    "(concurrent sequences of L tokens), and predicted generated tokens/s per mode (base, raw, compressed)\n"
    "at C running sequences of P prompt + T generated tokens, from step times measured on this machine\n"
    "(cached in FILE, default ~/.cache/lorafleet/step-times.json; --remeasure measures again).\n"
    "\n"
    "  --memory-gb G        the budget for weights, adapters and KV (default: MemAvailable on cpu)\n"
    "  --concurrency C      running sequences (default 64, the serving engine's batch)\n"
    "  --prompt-tokens P    prompt tokens per request (default 19: a one-line sonnet prompt)\n"
    "  --max-tokens T       generated tokens per request (default 32)\n"
    "  --adapter-cache-mb M raw mode's cache (default: all raw adapters that fit in the budget)\n"
    "  --requests R         model a run of R requests from a cold raw cache (as bench-serve runs);\n"
    "                       default: the steady state\n"
    "  --device D           cpu (measured here); cuda is not measured yet (exit 2)\n";

std::uint64_t mem_available() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    std::uint64_t kb = 0;
    std::string unit;
    while (in >> key >> kb >> unit)
        if (key == "MemAvailable:") return kb * 1024;
    return 0;
}

std::string mib(std::uint64_t b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f MiB", double(b) / (1024.0 * 1024.0));
    return buf;
}

int run_plan(const std::vector<std::string>& args) {
    arg_parser p({"model", "bank", "adapters", "device", "memory-gb", "concurrency", "prompt-tokens",
                  "max-tokens", "sequence-tokens", "threads", "cache", "adapter-cache-mb", "requests"},
                 {"json", "remeasure"});
    p.parse(args);
    if (!p.positionals().empty())
        throw usage_error("plan", "unexpected argument '" + p.positionals()[0] + "'");
    const std::string model_dir = p.required("model");
    if (p.has("bank") == p.has("adapters")) throw usage_error("plan", "give either --bank or --adapters");
    const std::string device = p.get_or("device", "cpu");
    if (device != "cpu")
        throw usage_error("plan", "--device " + device +
                                      ": only cpu step times are measured so far (the CUDA step model is not "
                                      "implemented)");
    quality::plan_options po;
    po.concurrency = int(p.get_int("concurrency", 64, 1, 1 << 16));
    po.prompt_tokens = int(p.get_int("prompt-tokens", 19, 1, 1 << 20));
    po.generated_tokens = int(p.get_int("max-tokens", 32, 1, 1 << 20));
    po.sequence_tokens = int(p.get_int("sequence-tokens", 0, 0, 1 << 24));
    const int threads = int(p.get_int("threads", 0, 0, 1024));
    po.raw_cache_bytes = std::uint64_t(p.get_int("adapter-cache-mb", 0, 0, 1 << 24)) << 20;
    po.requests = int(p.get_int("requests", 0, 0, 1 << 30));
    if (p.has("memory-gb"))
        po.memory_bytes = std::uint64_t(p.get_double("memory-gb", 0, 1e-6, 1e6) * 1024.0 * 1024.0 * 1024.0);
    else
        po.memory_bytes = mem_available();

    const auto weights = serve::model_weights::load(model_dir);
    const auto& g = weights->geometry();
    quality::fleet_bytes fleet;
    std::unique_ptr<serve::AdapterProvider> raw, compressed;
    std::string fleet_key;
    if (p.has("bank")) {
        const fs::path bank_dir = p.required("bank");
        auto b = bank::read_bank(bank_dir, {true, true, g, true});
        fleet = quality::bank_fleet_bytes(b);
        fleet_key = "bank/" + std::string(compress::to_string(b.kind)) + "/r" + std::to_string(b.rank) +
                    "/k" + std::to_string(b.clusters) + "/m" + std::to_string(b.modules.size());
        // The raw side measured on the bank's first 64 sources when they are still there.
        auto cache = std::make_unique<serve::CachedLoraDelta>(g, 1ull << 30);
        try {
            for (std::size_t i = 0; i < b.adapters.size() && i < 64; ++i)
                cache->add(quality::find_adapter_source(bank_dir, b.adapters[i].name, b.adapters[i].source),
                           b.adapters[i].name);
            raw = std::move(cache);
        } catch (const lorafleet::error& e) {
            std::fprintf(stderr, "plan: raw mode not measured (%s)\n", e.what());
        }
        b.raw_adapters.clear();
        compressed = std::make_unique<serve::BankDelta>(std::move(b), g, bank_dir.string());
    } else {
        std::vector<fs::path> paths;
        for (const auto& a : p.all("adapters"))
            paths.emplace_back(a);
        raw = serve::open_raw_provider(paths, g, 1ull << 40);
        fleet = quality::raw_fleet_bytes(raw->list());
        std::uint64_t max_bytes = 0;
        for (const auto& a : raw->list())
            max_bytes = std::max(max_bytes, a.bytes);
        fleet_key = "raw/" + std::to_string(max_bytes);
    }
    const fs::path cache_file =
        p.has("cache") ? fs::path(p.required("cache")) : quality::default_step_cache();
    const auto steps = quality::load_or_measure_steps(weights, raw.get(), compressed.get(), fleet_key,
                                                      threads, cache_file, p.has("remeasure"));
    const auto plan = quality::make_plan(*weights, fleet, steps, po);

    if (p.has("json")) {
        auto j = plan.to_json();
        j["step_times_cached"] = steps.from_cache;
        j["step_cache"] = cache_file.string();
        std::cout << j.dump(1) << "\n";
        return 0;
    }
    std::printf("model %s: weights %s, KV %llu bytes per token\n",
                weights->folder().lexically_normal().filename().string().c_str(),
                mib(plan.weight_bytes).c_str(), (unsigned long long)plan.kv_bytes_per_token);
    std::printf("fleet: %d adapters, raw %s each (max %s)", fleet.adapters, mib(fleet.raw_mean).c_str(),
                mib(fleet.raw_max).c_str());
    if (fleet.has_bank)
        std::printf(", bank bases %s + cores %s per adapter = %s", mib(fleet.bank_bases).c_str(),
                    mib(fleet.bank_core).c_str(),
                    mib(fleet.bank_bases + fleet.bank_core * std::uint64_t(fleet.adapters)).c_str());
    std::printf("\nbudget %s: %lld adapters fit resident raw", mib(plan.memory_bytes).c_str(),
                (long long)plan.raw_adapters_resident);
    if (fleet.has_bank) std::printf(", %lld compressed", (long long)plan.compressed_adapters_resident);
    std::printf("; KV left %s = %lld concurrent sequences of %d tokens\n", mib(plan.kv_left_bytes).c_str(),
                (long long)plan.concurrent_sequences, plan.sequence_tokens);
    std::printf("predicted at %d running sequences (%d prompt + %d generated tokens), step times %s:\n",
                plan.concurrency, po.prompt_tokens, po.generated_tokens,
                steps.from_cache ? ("cached in " + cache_file.string()).c_str() : "measured now");
    for (const auto& m : plan.modes) {
        if (m.measured)
            std::printf("  %-10s %10.0f tokens/s  (step %.2f ms)\n", m.mode.c_str(), m.tokens_per_s,
                        m.step_ms);
        else
            std::printf("  %-10s %10s\n", m.mode.c_str(), "not measured");
    }
    return 0;
}

const command_registrar reg{
    {"plan", "how many adapters fit and how fast serving will be (capacity plan)", usage_text, &run_plan}};

} // namespace
} // namespace lorafleet::cli
