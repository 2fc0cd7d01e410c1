// `lorafleet-cli generate`: text generation with the base model on the CPU. Prints only the generated text
// (streamed as it is produced, complete UTF-8 characters only), so the output can be piped; --stats adds
// one line of timings on stderr. Adapters (--bank / --adapter) come with the serving part that owns them.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/generate.hpp"
#include "engine/serve/model_weights.hpp"
#include "engine/serve/tokenizer.hpp"
#include "engine/serve/transformer.hpp"

#include <cstdio>
#include <iostream>
#include <limits>
#include <unistd.h>

namespace lorafleet::cli {
namespace {

const char* usage_text =
    "usage: lorafleet-cli generate --model DIR --prompt TEXT --max-tokens N [--temperature T] [--top-p P]\n"
    "                              [--top-k K] [--seed S] [--stop TEXT]... [--threads N] [--stats]\n"
    "\n"
    "Generates text with a Llama / Mistral / Qwen2 model in HuggingFace format (config.json,\n"
    "model.safetensors or a sharded index, tokenizer.json or tokenizer.model) on the CPU in float32.\n"
    "Prints only the generated text. An empty --prompt starts from BOS.\n"
    "\n"
    "  --model DIR        the model folder\n"
    "  --prompt TEXT      the prompt (BOS is added as the tokenizer's config says)\n"
    "  --max-tokens N     generate at most N tokens (generation also stops at EOS)\n"
    "  --temperature T    0 (the default) is greedy decoding; > 0 samples\n"
    "  --top-k K          sample only among the K most likely tokens (0 = all, the default)\n"
    "  --top-p P          sample only from the smallest set of tokens with probability mass P (default 1)\n"
    "  --seed S           random seed for sampling (default 0); the same seed gives the same text\n"
    "  --stop TEXT        stop before this text (repeatable)\n"
    "  --threads N        attention threads (default: one per hardware thread)\n"
    "  --stats            print token counts and tokens/s on stderr\n";

int run_generate(const std::vector<std::string>& args) {
    arg_parser p(
        {"model", "prompt", "max-tokens", "temperature", "top-p", "top-k", "seed", "stop", "threads"},
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

    auto weights = serve::model_weights::load(model_dir);
    const auto tokenizer = serve::load_tokenizer(model_dir);
    serve::transformer model(weights, threads);

    std::vector<int> ids = tokenizer->encode(prompt, true);
    if (ids.empty()) {
        if (tokenizer->bos_id() < 0)
            throw usage_error("generate",
                              "the prompt is empty and the tokenizer has no BOS token to start from");
        ids.push_back(tokenizer->bos_id());
    }
    const auto result = serve::generate(model, *tokenizer, ids, params, [](std::string_view text) {
        std::fwrite(text.data(), 1, text.size(), stdout);
        std::fflush(stdout);
    });
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
