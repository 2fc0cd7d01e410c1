// `lorafleet-cli generate`: text generation with the base model on the CPU. Prints only the generated text
// (streamed as it is produced, complete UTF-8 characters only), so the output can be piped; --stats adds
// one line of timings on stderr. An adapter (--adapter NAME) is served from a compressed bank (--bank) or
// from raw PEFT folders behind the LRU adapter cache (--adapters, --adapter-cache-mb). --device cuda (or
// auto, when a device is usable) runs the same request through the serving engine on the device
// (forward_pass.hpp); the CPU path is serve::generate as always. Model and adapters are opened through the
// serving session (engine/serve/session/serving_session.hpp): a raw adapter that cannot be loaded is
// skipped with one "generate: skipped adapter ..." line on stderr, and asking for it by --adapter fails
// with its reason.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/session/serving_session.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"

#include <cstdio>
#include <future>
#include <iostream>
#include <limits>
#include <memory>
#include <unistd.h>

namespace lorafleet::cli {
namespace {

const char* usage_text =
    "usage: lorafleet-cli generate --model DIR [--bank BANK | --adapters DIR...] [--adapter NAME]\n"
    "                              [--adapter-cache-mb M] --prompt TEXT --max-tokens N [--temperature T]\n"
    "                              [--top-p P] [--top-k K] [--seed S] [--stop TEXT]... [--threads N] "
    "[--stats]\n"
    "                              [--device cpu|cuda|auto] [--dtype auto|float32|bfloat16|float16]\n"
    "\n"
    "Generates text with a Llama / Mistral / Qwen2 model in HuggingFace format (config.json,\n"
    "model.safetensors or a sharded index, tokenizer.json or tokenizer.model) on the CPU (float32 math).\n"
    "Prints only the generated text. An empty --prompt starts from BOS.\n"
    "\n"
    "  --model DIR        the model folder\n"
    "  --bank BANK        serve adapters from this compressed bank folder\n"
    "  --adapters DIR     serve raw PEFT adapters: an adapter folder or a folder of them (repeatable)\n"
    "  --adapter NAME     the adapter to apply, by folder name (default: the base model alone)\n"
    "  --adapter-cache-mb M  float32 budget of the raw adapter cache in MiB (default 1024)\n"
    "  --prompt TEXT      the prompt (BOS is added as the tokenizer's config says)\n"
    "  --max-tokens N     generate at most N tokens (generation also stops at EOS)\n"
    "  --temperature T    0 (the default) is greedy decoding; > 0 samples\n"
    "  --top-k K          sample only among the K most likely tokens (0 = all, the default)\n"
    "  --top-p P          sample only from the smallest set of tokens with probability mass P (default 1)\n"
    "  --seed S           random seed for sampling (default 0); the same seed gives the same text\n"
    "  --stop TEXT        stop before this text (repeatable)\n"
    "  --threads N        attention threads (default: one per hardware thread)\n"
    "  --stats            print token counts and tokens/s on stderr\n"
    "  --device D         cpu (the default), cuda (exit 1 with the reason when no device is usable), or\n"
    "                     auto (cuda when usable, else cpu); the choice is printed on stderr\n"
    "  --dtype D          weights' precision: auto (the default: as stored in the checkpoint on the CPU;\n"
    "                     on a device float32 checkpoints become bfloat16), float32, bfloat16 or float16\n";

// The device path: one request through a serving_engine on the chosen device, streamed like generate().
int run_on_device(const serve::served_model& model, std::unique_ptr<serve::AdapterProvider> adapters,
                  serve::device_choice device, int threads, const std::string& adapter, std::vector<int> ids,
                  const serve::generation_params& params, bool stats) {
    if (ids.empty() || ids.front() < 0)
        throw usage_error("generate", "the prompt is empty and the tokenizer has no BOS token to start from");
    const auto& weights = model.weights;
    const auto& g = weights->geometry();
    serve::engine_options eo;
    eo.device = device;
    eo.threads = threads;
    eo.max_running = 1;
    // Room for the whole context, plus a block of slack per the cache's rounding.
    eo.kv_cache_bytes = std::uint64_t(weights->max_context() + 64) * std::uint64_t(g.num_layers) *
                        std::uint64_t(g.num_kv_heads) * std::uint64_t(g.head_dim) * 2 * sizeof(float);
    const auto started = serve::start_engine(model, std::move(adapters), eo);
    serve::serving_engine& engine = *started;
    std::promise<serve::completion_result> done;
    auto future = done.get_future();
    serve::completion_request req;
    req.adapter = adapter;
    req.prompt = std::move(ids);
    req.params = params;
    req.on_text = [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
    };
    req.on_done = [&done](const serve::completion_result& r) { done.set_value(r); };
    engine.submit(std::move(req));
    const serve::completion_result r = future.get();
    engine.shutdown(false);
    if (isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
    std::fflush(stdout);
    if (r.status != serve::completion_status::finished) throw lorafleet::error("generate", r.error);
    if (stats) {
        const double decode_s = r.total_s - r.ttft_s;
        std::fprintf(stderr,
                     "prompt %d tokens, %.1f tok/s prefill; generated %zu tokens (%s), %.1f tok/s decode "
                     "(device %s)\n",
                     r.prompt_tokens, r.ttft_s > 0 ? r.prompt_tokens / r.ttft_s : 0.0, r.tokens.size(),
                     std::string(serve::finish_reason_name(r.reason)).c_str(),
                     decode_s > 0 && r.tokens.size() > 1 ? double(r.tokens.size() - 1) / decode_s : 0.0,
                     std::string(engine.device()).c_str());
    }
    return 0;
}

int run_generate(const std::vector<std::string>& args) {
    arg_parser p({"model", "prompt", "max-tokens", "temperature", "top-p", "top-k", "seed", "stop", "threads",
                  "bank", "adapters", "adapter", "adapter-cache-mb", "device", "dtype"},
                 {"stats"});
    p.parse(args);
    if (!p.positionals().empty())
        throw usage_error("generate", "unexpected argument '" + p.positionals()[0] + "'");
    const std::string model_dir = p.required("model");
    // An empty prompt is meaningful (start from BOS), so only its absence is an error.
    if (!p.has("prompt")) throw usage_error("generate", "--prompt is required (it may be empty)");
    const std::string prompt = p.get_or("prompt", "");
    serve::generation_params params;
    if (!p.has("max-tokens")) throw usage_error("generate", "--max-tokens is required");
    params.max_tokens = static_cast<int>(p.get_int("max-tokens", 0, 0, 1 << 24));
    params.sampling.temperature = static_cast<float>(p.get_double("temperature", 0.0, 0.0, 100.0));
    params.sampling.top_k = static_cast<int>(p.get_int("top-k", 0, 0, 1 << 24));
    params.sampling.top_p = static_cast<float>(p.get_double("top-p", 1.0, 1e-6, 1.0));
    params.sampling.seed =
        static_cast<std::uint64_t>(p.get_int("seed", 0, 0, std::numeric_limits<long long>::max()));
    params.stop = p.all("stop");
    const int threads = static_cast<int>(p.get_int("threads", 0, 0, 1024));
    params.sampling.validate();
    if (p.has("bank") && p.has("adapters"))
        throw usage_error("generate", "--bank and --adapters are alternatives; give one");
    if (p.has("adapter") && !p.has("bank") && !p.has("adapters"))
        throw usage_error("generate", "--adapter needs --bank or --adapters to find it in");
    if (p.has("adapter-cache-mb") && !p.has("adapters"))
        throw usage_error("generate", "--adapter-cache-mb applies to --adapters only");
    const auto cache_mb = static_cast<std::uint64_t>(p.get_int("adapter-cache-mb", 1024, 1, 1 << 24));
    const serve::device_choice device = serve::parse_device_choice(p.get_or("device", "cpu"));

    serve::model_load_options load_options;
    load_options.dtype = serve::parse_weight_dtype_choice(p.get_or("dtype", "auto"));

    const serve::served_model served = serve::load_served_model(model_dir, load_options);
    const auto& weights = served.weights;
    const auto& tokenizer = served.tokenizer;

    serve::adapter_options adapter_options;
    if (p.has("bank")) {
        adapter_options.source = serve::adapter_source::bank_folder;
        adapter_options.bank_dir = p.required("bank");
    }
    if (p.has("adapters")) {
        adapter_options.source = serve::adapter_source::raw_folders;
        for (const auto& a : p.all("adapters"))
            adapter_options.raw_paths.emplace_back(a);
        adapter_options.raw_cache_bytes = cache_mb << 20;
    }
    serve::opened_adapters opened = serve::open_adapters(adapter_options, weights->geometry());
    for (const auto& s : opened.skipped)
        std::fprintf(stderr, "generate: %s\n", serve::describe(s).c_str());
    std::unique_ptr<serve::AdapterProvider> adapters = std::move(opened.provider);
    if (p.has("adapter")) {
        const std::string name = p.required("adapter");
        params.adapter = adapters->find(name);
        if (params.adapter < 0) {
            const auto known = adapters->list();
            std::string names;
            for (std::size_t i = 0; i < known.size() && i < 5; ++i)
                names += (i ? ", " : "") + known[i].name;
            if (known.size() > 5) names += ", ... (" + std::to_string(known.size()) + " in all)";
            for (const auto& s : opened.skipped)
                if (s.name == name)
                    throw validation_error("generate",
                                           "adapter '" + name + "' could not be loaded: " + s.reason);
            throw usage_error("generate", "no adapter named '" + name + "'" +
                                              (known.empty() ? std::string(" (there are none)")
                                                             : "; known adapters: " + names));
        }
    }
    const serve::device_resolution resolved = serve::resolve_device(device, adapters.get());
    if (p.has("device")) std::fprintf(stderr, "generate: device %s\n", resolved.note.c_str());
    if (resolved.device == serve::device_choice::cuda) {
        std::vector<int> ids = tokenizer->encode(prompt, true);
        if (ids.empty()) ids.push_back(tokenizer->bos_id()); // the engine refuses an empty prompt
        return run_on_device(served, std::move(adapters), device, threads, p.get_or("adapter", ""),
                             std::move(ids), params, p.has("stats"));
    }
    if (p.has("adapter")) {
        const int slot = params.adapter;
        if (adapters->prepare(std::span<const int>(&slot, 1)) != 1)
            throw validation_error(p.required("adapter"), "the adapter does not fit in the adapter cache");
    }
    serve::transformer model(weights, threads);

    std::vector<int> ids = tokenizer->encode(prompt, true);
    if (ids.empty()) {
        if (tokenizer->bos_id() < 0)
            throw usage_error("generate",
                              "the prompt is empty and the tokenizer has no BOS token to start from");
        ids.push_back(tokenizer->bos_id());
    }
    const auto result = serve::generate(
        model, *tokenizer, ids, params,
        [](std::string_view text) {
            std::fwrite(text.data(), 1, text.size(), stdout);
            std::fflush(stdout);
        },
        params.adapter >= 0 ? adapters.get() : nullptr);
    if (isatty(STDOUT_FILENO)) std::fputc('\n', stdout); // a terminal prompt should not follow the text
    std::fflush(stdout);
    if (p.has("stats")) {
        const double decoded = result.decode_steps;
        std::fprintf(stderr,
                     "prompt %d tokens, %.1f tok/s prefill; generated %zu tokens (%s), %.1f tok/s decode\n",
                     result.prompt_tokens,
                     result.prefill_seconds > 0 ? result.prompt_tokens / result.prefill_seconds : 0.0,
                     result.tokens.size(), std::string(serve::finish_reason_name(result.reason)).c_str(),
                     result.decode_seconds > 0 ? decoded / result.decode_seconds : 0.0);
    }
    return 0;
}

const command_registrar reg{
    {"generate", "generate text with a base model on the CPU", usage_text, &run_generate}};

} // namespace
} // namespace lorafleet::cli
