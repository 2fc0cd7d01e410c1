// `lorafleet-cli evaluate`: how closely each compressed adapter of a bank reproduces its raw original
// (engine/quality/agreement.hpp): greedy outputs of the raw PEFT adapter on a prompt set, the compressed
// adapter teacher-forced on them, per adapter exact-match rate, token agreement, first divergence and mean
// KL(raw || compressed), beside its reconstruction error and cluster. The raw adapters are the bank's
// recorded sources, or the folders under --adapters. The result is stored in the bank's manifest (optional
// "quality" section; --no-save skips that) so the console can show it without recomputing.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "app/cli/eval_prompts.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/quality/bank_evaluation.hpp"
#include "engine/serve/model/forward_pass.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>

namespace lorafleet::cli {
namespace {

namespace fs = std::filesystem;

const char* usage_text =
    "usage: lorafleet-cli evaluate --model DIR --bank BANK [--adapters DIR]... [--prompts FILE]\n"
    "                              [--prompt-count N] [--max-tokens N] [--adapter NAME]... [--json | --csv]\n"
    "                              [--no-save] [--keep-raw N] [--keep-raw-below-agreement X] [--batch S]\n"
    "                              [--adapter-cache-mb M] [--threads N] [--device cpu|cuda|auto]\n"
    "\n"
    "Measures how closely each compressed adapter reproduces its raw original: the raw PEFT adapter\n"
    "generates greedily from every prompt, the compressed adapter is teacher-forced on those tokens, and\n"
    "per adapter it reports the exact-match rate (whole sequences equal), the token agreement, the first\n"
    "divergence and the mean KL(raw || compressed) per token, beside the reconstruction error and cluster.\n"
    "The result is stored in the bank's manifest (an optional section older readers ignore).\n"
    "\n"
    "  --model DIR          the base model folder the bank was made for\n"
    "  --bank BANK          the compressed bank\n"
    "  --adapters DIR       the raw PEFT adapters (an adapter folder or a folder of them, repeatable);\n"
    "                       default: the source folders the bank recorded\n"
    "  --prompts FILE       one prompt per non-blank line (default: the bundled sonnets)\n"
    "  --prompt-count N     use the first N prompts (default 32)\n"
    "  --max-tokens N       greedy tokens per prompt (default 32; generation also stops at EOS)\n"
    "  --adapter NAME       evaluate only these adapters (repeatable; default: every adapter of the bank)\n"
    "  --json               one JSON document on stdout: {\"adapters\": [{\"name\", \"cluster\", \"error\",\n"
    "                       \"exact_match\", \"token_agreement\", \"first_divergence\", "
    "\"mean_first_divergence\",\n"
    "                       \"mean_kl\", \"prompts\", \"tokens\"}...], \"prompts\", \"max_tokens\", "
    "\"seconds\", ...}\n"
    "  --csv                the per-adapter table as CSV on stdout\n"
    "  --no-save            do not store the result in the bank\n"
    "  --keep-raw N         serve the N adapters with the lowest token agreement from their raw PEFT\n"
    "                       files from now on (hybrid serving; the bank becomes format version 2)\n"
    "  --keep-raw-below-agreement X  serve every adapter whose token agreement is below X raw (with\n"
    "                       --keep-raw: both sets), chosen over the bank's stored results\n"
    "  --batch S            sequences (adapter x prompt) per raw forward step (default 256)\n"
    "  --adapter-cache-mb M float32 budget of the raw adapter cache in MiB (default 1024)\n"
    "  --threads N          forward-pass threads (default: one per hardware thread)\n"
    "  --device D           cpu (the default), cuda or auto\n";

std::string fixed(double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

int run_evaluate(const std::vector<std::string>& args) {
    arg_parser p({"model", "bank", "adapters", "prompts", "prompt-count", "max-tokens", "adapter", "batch",
                  "adapter-cache-mb", "threads", "device", "keep-raw", "keep-raw-below-agreement"},
                 {"json", "csv", "no-save"});
    p.parse(args);
    if (!p.positionals().empty())
        throw usage_error("evaluate", "unexpected argument '" + p.positionals()[0] + "'");
    const std::string model_dir = p.required("model");
    const fs::path bank_dir = p.required("bank");
    if (p.has("json") && p.has("csv")) throw usage_error("evaluate", "--json and --csv are alternatives");
    const bool choose_raw = p.has("keep-raw") || p.has("keep-raw-below-agreement");
    if (choose_raw && p.has("no-save"))
        throw usage_error("evaluate",
                          "--keep-raw and --keep-raw-below-agreement store their choice; drop --no-save");
    const int keep_raw = static_cast<int>(p.get_int("keep-raw", 0, 0, 1 << 24));
    std::optional<double> below;
    if (p.has("keep-raw-below-agreement")) below = p.get_double("keep-raw-below-agreement", 0.0, 0.0, 1.0);
    const int prompt_count = static_cast<int>(p.get_int("prompt-count", 32, 1, 1 << 20));
    quality::bank_evaluation_options options;
    options.agreement.max_tokens = static_cast<int>(p.get_int("max-tokens", 32, 1, 1 << 20));
    options.agreement.batch_sequences = static_cast<int>(p.get_int("batch", 256, 1, 1 << 20));
    options.raw_cache_bytes = std::uint64_t(p.get_int("adapter-cache-mb", 1024, 1, 1 << 24)) << 20;
    options.threads = static_cast<int>(p.get_int("threads", 0, 0, 1024));
    options.device = serve::parse_device_choice(p.get_or("device", "cpu"));
    options.adapters = p.all("adapter");
    for (const auto& a : p.all("adapters"))
        options.raw_paths.emplace_back(a);

    const auto t0 = std::chrono::steady_clock::now();
    const auto weights = serve::model_weights::load(model_dir);
    const auto tokenizer = serve::load_tokenizer(model_dir);
    if (options.agreement.max_tokens >= weights->max_context())
        throw usage_error("evaluate", "--max-tokens must be below the model's context of " +
                                          std::to_string(weights->max_context()));
    options.agreement.eos = tokenizer->eos_ids();
    options.agreement.vocab_limit = std::min(weights->geometry().vocab_size, tokenizer->vocab_size());
    std::optional<fs::path> prompts_file;
    if (p.has("prompts")) prompts_file = fs::path(*p.get("prompts"));
    const auto prompts = read_eval_prompts(prompts_file, prompt_count, *tokenizer);

    const bool show_progress = !p.has("json") && !p.has("csv");
    options.agreement.progress = [&](int done, int all) {
        if (show_progress) std::fprintf(stderr, "\revaluate: %d / %d adapters", done, all);
        if (show_progress && done == all) std::fputc('\n', stderr);
        return true;
    };
    const auto eval = quality::evaluate_bank(bank_dir, weights, prompts, options);
    if (p.has("device")) std::fprintf(stderr, "evaluate: device %s\n", eval.device_note.c_str());
    const auto& results = eval.results;
    std::map<std::string, const serve::adapter_info*> by_name;
    for (const auto& a : eval.adapters)
        by_name.emplace(a.name, &a);

    std::vector<std::string> raw_names;
    if (!p.has("no-save")) {
        // Merged into an earlier evaluation made the same way (e.g. of other adapters), else replacing it.
        const auto stored = bank::read_bank(bank_dir, {false, false, std::nullopt, false}).quality;
        bank::bank_manifest_update update;
        update.quality = quality::merge_quality(stored, eval.section);
        if (choose_raw) {
            raw_names = quality::choose_raw_adapters(update.quality->adapters, below, keep_raw);
            update.raw_adapters = raw_names;
        }
        bank::update_bank_manifest(bank_dir, update);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    double sum_exact = 0, sum_agree = 0, sum_kl = 0;
    for (const auto& r : results) {
        sum_exact += r.quality.exact_match();
        sum_agree += r.quality.token_agreement();
        sum_kl += r.quality.mean_kl;
    }
    const double count = results.empty() ? 1.0 : double(results.size());
    if (p.has("json")) {
        nlohmann::json rows = nlohmann::json::array();
        for (const auto& r : results) {
            const auto& info = *by_name.at(r.name);
            const auto& q = r.quality;
            rows.push_back({{"name", r.name},
                            {"cluster", info.cluster},
                            {"error", std::isnan(info.error) ? nlohmann::json() : nlohmann::json(info.error)},
                            {"exact_match", q.exact_match()},
                            {"token_agreement", q.token_agreement()},
                            {"first_divergence", q.first_divergence},
                            {"mean_first_divergence", q.mean_first_divergence},
                            {"mean_kl", q.mean_kl},
                            {"prompts", q.prompts},
                            {"tokens", q.tokens}});
        }
        nlohmann::json out{{"adapters", rows},
                           {"prompts", prompts.size()},
                           {"max_tokens", options.agreement.max_tokens},
                           {"device", eval.device},
                           {"seconds", seconds},
                           {"mean_exact_match", sum_exact / count},
                           {"mean_token_agreement", sum_agree / count},
                           {"mean_kl", sum_kl / count},
                           {"saved", !p.has("no-save")}};
        if (choose_raw) out["raw_adapters"] = raw_names;
        std::cout << out.dump(1) << "\n";
        return 0;
    }
    if (p.has("csv")) {
        std::cout << "name,cluster,error,exact_match,token_agreement,first_divergence,mean_first_divergence,"
                     "mean_kl,prompts,tokens\n";
        for (const auto& r : results) {
            const auto& info = *by_name.at(r.name);
            const auto& q = r.quality;
            std::cout << r.name << ',' << info.cluster << ',' << fixed(info.error, 6) << ','
                      << fixed(q.exact_match(), 4) << ',' << fixed(q.token_agreement(), 4) << ','
                      << q.first_divergence << ',' << fixed(q.mean_first_divergence, 2) << ','
                      << fixed(q.mean_kl, 6) << ',' << q.prompts << ',' << q.tokens << "\n";
        }
        return 0;
    }
    std::printf("%-24s %7s %9s %7s %9s %6s %10s\n", "adapter", "cluster", "error", "exact", "agreement",
                "first", "KL");
    for (const auto& r : results) {
        const auto& info = *by_name.at(r.name);
        const auto& q = r.quality;
        std::printf("%-24s %7d %9.5f %7.3f %9.4f %6d %10.6f\n", r.name.c_str(), info.cluster, info.error,
                    q.exact_match(), q.token_agreement(), q.first_divergence, q.mean_kl);
    }
    std::printf("%zu adapters x %zu prompts x %d tokens in %.1f s: mean exact match %.3f, token agreement "
                "%.4f, KL %.6f%s\n",
                results.size(), prompts.size(), options.agreement.max_tokens, seconds, sum_exact / count,
                sum_agree / count, sum_kl / count, p.has("no-save") ? "" : " (stored in the bank)");
    if (choose_raw) {
        std::printf("served raw from now on (%zu):", raw_names.size());
        for (const auto& n : raw_names)
            std::printf(" %s", n.c_str());
        std::printf("\n");
    }
    return 0;
}

const command_registrar reg{
    {"evaluate", "agreement of compressed adapters with their raw originals", usage_text, &run_evaluate}};

} // namespace
} // namespace lorafleet::cli
