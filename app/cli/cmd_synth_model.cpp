// `lorafleet-cli synth-model`: writes a random-weight HuggingFace model folder at a real geometry
// (engine/synth/synthetic_model.hpp), so `generate`, `serve` and `bench-serve` run the real engine at full
// size without a download. Progress (bytes written) goes to stderr, a one-line summary to stdout; a wrong
// command line is one line on stderr and exit code 2; a file-system failure is exit 1 and leaves DIR as
// it was.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/synth/synthetic_model.hpp"

#include <chrono>
#include <climits>
#include <cstdio>
#include <iostream>
#include <string>

namespace lorafleet::cli {
namespace {

const char* const synth_model_usage =
    "usage: lorafleet-cli synth-model --geometry NAME|CONFIG --out DIR [options]\n"
    "\n"
    "Writes a HuggingFace model folder with random weights: config.json, sharded safetensors\n"
    "(model-0000i-of-0000N.safetensors + model.safetensors.index.json) and a byte-level BPE tokenizer\n"
    "with the geometry's vocabulary, for measuring the serving engine at full size. The weights are\n"
    "scaled so activations and logits stay sane at any depth; the text it generates is gibberish.\n"
    "\n"
    "  --geometry G        a preset (tinystories-656k, tinyllama-1.1b, mistral-7b, llama-2-7b,\n"
    "                      llama-3-8b), a config.json or a folder holding one\n"
    "  --out DIR           output folder; must be absent or empty unless --force\n"
    "  --dtype T           bf16 (default), fp16 or fp32\n"
    "  --layers N          write only the first N layers (a shallower model for quick runs)\n"
    "  --seed S            random seed (default 0); the same options and seed give identical files\n"
    "  --shard-mb M        tensor data per shard in MiB (default 2048; a larger tensor gets its own)\n"
    "  --threads T         generator threads (default min(4, cores))\n"
    "  --force             replace DIR when it already holds a model folder (one with config.json)\n";

io::dtype parse_model_dtype(const std::string& text) {
    if (text == "bf16" || text == "BF16" || text == "bfloat16") return io::dtype::BF16;
    if (text == "fp16" || text == "f16" || text == "F16" || text == "float16") return io::dtype::F16;
    if (text == "fp32" || text == "f32" || text == "F32" || text == "float32") return io::dtype::F32;
    throw usage_error("", "--dtype must be bf16, fp16 or fp32, got '" + text + "'");
}

synth::synth_model_options parse_synth_model_args(const std::vector<std::string>& args) {
    arg_parser p({"geometry", "out", "dtype", "layers", "seed", "shard-mb", "threads"}, {"force"});
    p.parse(args);
    if (!p.positionals().empty())
        throw usage_error("", "unexpected argument '" + p.positionals().front() + "'");
    synth::synth_model_options o;
    o.out_dir = p.required("out");
    o.geometry = io::resolve_geometry(p.required("geometry"));
    o.dtype = parse_model_dtype(p.get_or("dtype", "bf16"));
    o.layers = static_cast<int>(p.get_int("layers", 0, 1, std::max(1, o.geometry.num_layers)));
    o.seed = static_cast<std::uint64_t>(p.get_int("seed", 0, 0, LLONG_MAX));
    o.shard_bytes = static_cast<std::uint64_t>(p.get_int("shard-mb", 2048, 1, 1 << 24)) << 20;
    o.threads = static_cast<int>(p.get_int("threads", 0, 1, 256));
    o.force = p.has("force");
    synth::validate_synth_model_options(o); // vocabulary and special ids against the tokenizer's rules
    return o;
}

// "812.3 MB" below a gigabyte, "14.48 GB" above (decimal units, as disks are sold).
std::string size_text(double bytes) {
    char buf[32];
    if (bytes < 1e9)
        std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
    else
        std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
    return buf;
}

int run_synth_model(const std::vector<std::string>& args) {
    synth::synth_model_options o;
    try {
        o = parse_synth_model_args(args);
    } catch (const usage_error& e) {
        // One line: the full usage would bury the reason (it is one `--help` away).
        std::cerr << "lorafleet-cli synth-model: " << e.what() << " (see lorafleet-cli synth-model --help)\n";
        return 2;
    }

    const auto start = std::chrono::steady_clock::now();
    int last_step = -1;
    const auto progress = [&](std::uint64_t done, std::uint64_t total) {
        // A line every 5% of the bytes, and always the last one.
        const int step = total ? static_cast<int>(done * 20 / total) : 20;
        if (step != last_step)
            std::fprintf(stderr, "synth-model: %s of %s written (%d%%)\n", size_text(double(done)).c_str(),
                         size_text(double(total)).c_str(),
                         total ? static_cast<int>(done * 100 / total) : 100);
        last_step = step;
        return true;
    };
    synth::synth_model_result r;
    try {
        r = synth::write_synthetic_model(o, progress);
    } catch (const usage_error& e) { // an existing folder
        std::cerr << "lorafleet-cli synth-model: " << e.what() << "\n";
        return 2;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& g = r.plan.geometry;
    const double params = double(r.plan.tensor_bytes) / double(io::dtype_size(o.dtype));
    char params_text[32];
    std::snprintf(params_text, sizeof params_text, params < 1e9 ? "%.1f M" : "%.2f B",
                  params < 1e9 ? params / 1e6 : params / 1e9);
    const char* dtype = o.dtype == io::dtype::BF16 ? "bf16" : o.dtype == io::dtype::F16 ? "fp16" : "fp32";
    std::printf("wrote %s to %s: %llu bytes (%s) in %.1f s (%s, %d layers, hidden %d, vocab %d, %d shard%s, "
                "%s parameters)\n",
                g.architecture.c_str(), o.out_dir.string().c_str(), static_cast<unsigned long long>(r.bytes),
                size_text(double(r.bytes)).c_str(), seconds, dtype, g.num_layers, g.hidden_size, g.vocab_size,
                r.plan.shards, r.plan.shards == 1 ? "" : "s", params_text);
    return 0;
}

const command_registrar reg{{"synth-model", "write a random-weight HF model folder at a real geometry",
                             synth_model_usage, &run_synth_model}};

} // namespace
} // namespace lorafleet::cli
