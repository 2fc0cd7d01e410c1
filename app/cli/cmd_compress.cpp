// `lorafleet-cli compress PATH... --method jd-full|jd-diag --rank R [--clusters K|auto] [--target-error E]
//  [--device auto|cpu|cuda] [--gpu-memory-mb MB] [--normalize unit|none] [--seed S] [--dtype f16] [--base
//  CONFIG] --out BANK
//  [--overwrite] [--json]`: joint compression of a fleet into a bank. Progress on stderr; with --json one
// JSON object on stdout (adapters with cluster and error, clusters, rank, method, seconds, bytes).
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "app/cli/eval_prompts.hpp"
#include "app/cli/fleet_args.hpp"
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/quality/bank_evaluation.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>

namespace lorafleet::cli {
namespace {

int run_compress(const std::vector<std::string>& args) {
    arg_parser p({"method", "rank",          "clusters",     "target-error",
                  "device", "normalize",     "seed",         "out",
                  "dtype",  "base",          "threads",      "max-clusters",
                  "init",   "gpu-memory-mb", "keep-raw",     "keep-raw-below-agreement",
                  "model",  "prompts",       "prompt-count", "max-tokens"},
                 {"json", "overwrite", "strict"});
    p.parse(args);
    const auto t0 = std::chrono::steady_clock::now();
    const std::filesystem::path out = p.required("out");
    bank::check_bank_target(out, p.has("overwrite")); // before any work
    // Hybrid serving: which adapters the bank serves from their raw PEFT files. By token agreement after an
    // evaluation on --model (`evaluate`), or without one the --keep-raw N with the largest error.
    const int keep_raw = int(p.get_int("keep-raw", 0, 0, 1 << 24));
    std::optional<double> keep_below;
    if (p.has("keep-raw-below-agreement"))
        keep_below = p.get_double("keep-raw-below-agreement", 0.0, 0.0, 1.0);
    if (keep_below && !p.has("model"))
        throw usage_error("", "--keep-raw-below-agreement needs --model (the agreement is measured on it)");
    for (const char* flag : {"prompts", "prompt-count", "max-tokens"})
        if (p.has(flag) && !p.has("model"))
            throw usage_error("",
                              std::string("--") + flag + " applies to the evaluation, which needs --model");

    compress::compress_options options;
    const std::string method_text = p.get_or("method", "jd-full");
    options.jd.method = compress::parse_jd_method(method_text);
    options.jd.rank = p.get_int("rank", 16, 1, 4096);
    const std::string clusters = p.get_or("clusters", "1");
    options.clusters = clusters == "auto" ? 0 : int(p.get_int("clusters", 1, 1, 100000));
    options.target_error = p.get_double("target-error", 0.6, 0.0, 1.0);
    options.max_clusters = int(p.get_int("max-clusters", options.max_clusters, 1, 100000));
    const std::string normalize = p.get_or("normalize", "unit");
    if (normalize != "unit" && normalize != "none") throw usage_error("", "--normalize must be unit or none");
    options.jd.norm = normalize == "unit" ? compress::normalization::unit : compress::normalization::none;
    const std::string init = p.get_or("init", "hosvd");
    if (init != "hosvd" && init != "random") throw usage_error("", "--init must be hosvd or random");
    options.jd.init = init == "hosvd" ? compress::jd_init::hosvd : compress::jd_init::random;
    if (p.has("seed"))
        options.jd.seed = std::uint64_t(p.get_int("seed", 0, 0, std::numeric_limits<long long>::max()));
    const auto storage = parse_storage_dtype(p.get_or("dtype", "f16"));
    const std::string device = p.get_or("device", "auto");
    const int threads = int(p.get_int("threads", 0, 0, 1024));
    const auto gpu_memory_mb = static_cast<std::size_t>(p.get_int("gpu-memory-mb", 0, 0, 1LL << 30));
    std::optional<io::model_geometry> base;
    if (p.has("base")) base = io::resolve_geometry(p.required("base"));

    auto backend = lorafleet::backend::make_compress_backend(device, threads, gpu_memory_mb);
    const auto adapters =
        load_fleet_or_fail("compress", p.positionals(), base ? &*base : nullptr, p.has("strict"));
    // The header line comes with the first progress report, once the fleet is known to be consistent
    // (unique names, agreeing shapes): a bad fleet prints nothing but its one-line error.
    bool announced = false;
    auto last = std::chrono::steady_clock::now() - std::chrono::seconds(10);
    const auto compressed = bank::compress_adapters_to_bank(
        adapters, *backend, options, base, threads, [&](const compress::progress_info& info) {
            if (!announced) {
                std::cerr << "compress: " << adapters.size() << " adapters, " << method_text << " rank "
                          << options.jd.rank << ", clusters " << clusters << ", backend " << backend->name()
                          << "\n";
                announced = true;
            }
            const auto now = std::chrono::steady_clock::now();
            if (now - last >= std::chrono::milliseconds(1000) || info.fraction >= 1.0) {
                char eta[32] = "";
                if (info.eta_seconds >= 0) std::snprintf(eta, sizeof eta, ", ETA %.0f s", info.eta_seconds);
                std::fprintf(stderr, "compress: %5.1f%% %s %s%s\n", 100.0 * info.fraction, info.stage.c_str(),
                             info.module.c_str(), eta);
                last = now;
            }
            return true;
        });
    const auto& result = compressed.result;
    const auto& b = compressed.bank;
    const std::uint64_t bytes_original = compressed.bytes_original;
    const auto bytes_compressed = bank::write_bank(out, b, {storage, p.has("overwrite")});
    std::vector<std::string> raw_names;
    std::optional<bank::quality_section> evaluated;
    if (p.has("model")) {
        // The bank as written (its storage dtype included) against the adapters it was made from.
        const auto weights = serve::model_weights::load(p.required("model"));
        const auto tokenizer = serve::load_tokenizer(p.required("model"));
        quality::bank_evaluation_options eo;
        eo.agreement.max_tokens = int(p.get_int("max-tokens", 32, 1, weights->max_context() - 1));
        eo.agreement.eos = tokenizer->eos_ids();
        eo.agreement.vocab_limit = std::min(weights->geometry().vocab_size, tokenizer->vocab_size());
        eo.threads = threads;
        std::optional<std::filesystem::path> prompts_file;
        if (p.has("prompts")) prompts_file = std::filesystem::path(p.required("prompts"));
        const auto prompts =
            read_eval_prompts(prompts_file, int(p.get_int("prompt-count", 32, 1, 1 << 20)), *tokenizer);
        std::fprintf(stderr, "compress: evaluating %zu adapters on %zu prompts x %d tokens\n",
                     b.adapters.size(), prompts.size(), eo.agreement.max_tokens);
        evaluated = quality::evaluate_bank(out, weights, prompts, eo).section;
        raw_names = quality::choose_raw_adapters(evaluated->adapters, keep_below, keep_raw);
    } else if (keep_raw > 0) {
        std::vector<std::pair<double, std::string>> by_error;
        for (const auto& a : b.adapters)
            by_error.emplace_back(-a.mean_error(), a.name);
        std::sort(by_error.begin(), by_error.end());
        for (std::size_t i = 0; i < by_error.size() && int(i) < keep_raw; ++i)
            raw_names.push_back(by_error[i].second);
        std::sort(raw_names.begin(), raw_names.end());
    }
    if (evaluated || !raw_names.empty()) bank::update_bank_manifest(out, {evaluated, raw_names});
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    if (p.has("json")) {
        nlohmann::json j{{"bank", out.string()},
                         {"method", method_text},
                         {"rank", options.jd.rank},
                         {"clusters", result.k},
                         {"target_met", result.target_met},
                         {"mean_error", result.mean_error},
                         {"max_error", result.max_error},
                         {"seconds", seconds},
                         {"bytes_original", bytes_original},
                         {"bytes_compressed", bytes_compressed},
                         {"device", backend->name()}};
        j["adapters"] = nlohmann::json::array();
        for (std::size_t i = 0; i < b.adapters.size(); ++i)
            j["adapters"].push_back({{"name", b.adapters[i].name},
                                     {"cluster", b.adapters[i].cluster},
                                     {"error", b.adapters[i].mean_error()}});
        j["raw_adapters"] = raw_names;
        if (evaluated) {
            for (auto& a : j["adapters"]) {
                const auto& q = evaluated->adapters.at(a["name"].get<std::string>());
                a["token_agreement"] = q.token_agreement();
                a["exact_match"] = q.exact_match();
                a["mean_kl"] = q.mean_kl;
            }
        }
        j["k_trials"] = nlohmann::json::array();
        for (const auto& [k, e] : result.k_trials)
            j["k_trials"].push_back({{"clusters", k}, {"mean_error", e}});
        std::cout << j.dump(2) << "\n";
    } else {
        std::printf(
            "compressed %zu adapters into %s: %s rank %lld, %d cluster%s, mean error %.4f (max %.4f), "
            "%.1f MB -> %.1f MB (%.1f%%), %.1f s\n",
            b.adapters.size(), out.c_str(), method_text.c_str(), (long long)options.jd.rank, result.k,
            result.k == 1 ? "" : "s", result.mean_error, result.max_error, double(bytes_original) / 1e6,
            double(bytes_compressed) / 1e6,
            100.0 * double(bytes_compressed) / double(std::max<std::uint64_t>(1, bytes_original)), seconds);
        if (!raw_names.empty()) {
            std::printf("served raw (hybrid, bank format 2): %zu adapter%s:", raw_names.size(),
                        raw_names.size() == 1 ? "" : "s");
            for (const auto& n : raw_names)
                std::printf(" %s", n.c_str());
            std::printf("\n");
        }
        if (options.clusters == 0 && !result.target_met)
            std::printf("note: target error %.3f not reached with up to %d clusters\n", options.target_error,
                        result.k);
    }
    return 0;
}

const command_registrar reg{
    {"compress", "jointly compress a fleet of PEFT adapters into a bank",
     "usage: lorafleet-cli compress PATH... --out BANK [options]\n"
     "  PATH                 an adapter folder or a folder searched recursively for adapters\n"
     "  --method M           jd-full (r x r core per adapter, default) or jd-diag (r numbers per adapter)\n"
     "  --rank R             joint rank of the shared bases (default 16)\n"
     "  --clusters K|auto    number of clusters (default 1); auto: smallest K with mean error <= target\n"
     "  --target-error E     target mean squared relative error for --clusters auto (default 0.6)\n"
     "  --max-clusters K     cap of the automatic search (default 64)\n"
     "  --normalize unit|none  fit every adapter with equal weight (default) or by its norm\n"
     "  --init hosvd|random  initial bases (default hosvd)\n"
     "  --seed S             seed of random initialisation and clustering\n"
     "  --device auto|cpu|cuda  compute backend (default auto)\n"
     "  --gpu-memory-mb MB   device memory the CUDA backend may use (default: 90% of free)\n"
     "  --threads N          CPU threads (default: all)\n"
     "  --dtype f32|f16|bf16 storage of the bank's tensors (default f16)\n"
     "  --base PRESET|config.json  check every adapter against this base model's shapes\n"
     "  --overwrite          replace an existing bank at BANK\n"
     "  --strict             fail when any adapter is rejected (default: skip it with one line)\n"
     "  --json               print a JSON summary on stdout\n"
     "  --model DIR          evaluate the new bank on this base model (as `evaluate` does) and store the\n"
     "                       result in it; --prompts FILE, --prompt-count N (32), --max-tokens N (32)\n"
     "  --keep-raw N         serve N adapters from their raw PEFT files (hybrid serving, bank format 2):\n"
     "                       the N with the lowest token agreement (with --model), else the N largest "
     "errors\n"
     "  --keep-raw-below-agreement X  with --model: also serve raw every adapter whose token agreement is\n"
     "                       below X\n",
     &run_compress}};

} // namespace
} // namespace lorafleet::cli
