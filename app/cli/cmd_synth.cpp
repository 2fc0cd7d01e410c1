// `lorafleet-cli synth`: writes a synthetic fleet of real PEFT LoRA adapters with planted groups
// (engine/synth/synthetic_fleet.hpp) for tests, benchmarks and demos. Progress goes to stderr, a one-line
// summary to stdout; a wrong command line is one line on stderr and exit code 2.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/core/error.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/synth/synthetic_fleet.hpp"

#include <chrono>
#include <climits>
#include <cstdio>
#include <iostream>

namespace lorafleet::cli {
namespace {

const char* const synth_usage =
    "usage: lorafleet-cli synth --out DIR --adapters N --geometry NAME|CONFIG [options]\n"
    "\n"
    "Writes N PEFT LoRA adapter folders (DIR/adapter-0000, ...) whose weights have planted cluster\n"
    "structure: K groups share orthonormal input/output bases per module, plus relative noise.\n"
    "\n"
    "  --out DIR           output folder; must be empty or absent unless --overwrite\n"
    "  --adapters N        number of adapters (>= 1)\n"
    "  --geometry G        base model: a preset (tinystories-656k, mistral-7b, ...) or a config.json\n"
    "  --modules LIST      adapted modules, comma separated (default q_proj,k_proj,v_proj)\n"
    "  --rank R            LoRA rank (default 16; at most min(d_in, d_out) of every module)\n"
    "  --alpha A           lora_alpha (default 32)\n"
    "  --clusters K        planted groups, 1..N (default max(1, N / 40))\n"
    "  --noise X           per-adapter noise, relative Frobenius norm (default 0.05)\n"
    "  --dtype T           bf16, f16 or f32 (default bf16)\n"
    "  --seed S            random seed (default 0); same options and seed give identical files\n"
    "  --shared-a F        fraction of each group using the group's lora_A exactly (default 0.25)\n"
    "  --layers L          adapt only the first L layers (default: all)\n"
    "  --threads T         worker threads (default min(4, cores))\n"
    "  --overwrite         write into a non-empty DIR, replacing its adapter-* folders\n";

io::dtype parse_dtype_flag(const std::string& text) {
    if (text == "bf16" || text == "BF16" || text == "bfloat16") return io::dtype::BF16;
    if (text == "f16" || text == "F16" || text == "fp16" || text == "float16") return io::dtype::F16;
    if (text == "f32" || text == "F32" || text == "fp32" || text == "float32") return io::dtype::F32;
    throw usage_error("", "--dtype must be bf16, f16 or f32, got '" + text + "'");
}

synth::synth_options parse_synth_args(const std::vector<std::string>& args) {
    arg_parser p({"out", "adapters", "geometry", "modules", "rank", "alpha", "clusters", "noise", "dtype",
                  "seed", "shared-a", "layers", "threads"},
                 {"overwrite"});
    p.parse(args);
    if (!p.positionals().empty())
        throw usage_error("", "unexpected argument '" + p.positionals().front() + "'");
    synth::synth_options o;
    o.out_dir = p.required("out");
    if (!p.has("adapters")) throw usage_error("", "--adapters is required");
    o.adapters = static_cast<int>(p.get_int("adapters", 0, 1, 10'000'000));
    o.geometry = io::resolve_geometry(p.required("geometry"));
    if (p.has("modules")) o.modules = split_list(*p.get("modules"));
    if (o.modules.empty()) throw usage_error("", "--modules is empty");
    o.rank = static_cast<int>(p.get_int("rank", 16, 1, INT_MAX));
    o.alpha = p.get_double("alpha", 32.0, 1e-6, 1e9);
    o.clusters = static_cast<int>(p.get_int("clusters", synth::default_clusters(o.adapters), 1, o.adapters));
    o.noise = p.get_double("noise", 0.05, 0.0, 100.0);
    o.dtype = parse_dtype_flag(p.get_or("dtype", "bf16"));
    o.seed = static_cast<std::uint64_t>(p.get_int("seed", 0, 0, LLONG_MAX));
    o.shared_a_fraction = p.get_double("shared-a", 0.25, 0.0, 1.0);
    o.layers = static_cast<int>(p.get_int("layers", 0, 1, std::max(1, o.geometry.num_layers)));
    o.threads = static_cast<int>(p.get_int("threads", 0, 1, 256));
    o.overwrite = p.has("overwrite");
    synth::validate_synth_options(o); // rank and module names against the geometry
    return o;
}

std::string dtype_flag(io::dtype t) {
    return t == io::dtype::BF16 ? "bf16" : t == io::dtype::F16 ? "f16" : "f32";
}

int run_synth(const std::vector<std::string>& args) {
    synth::synth_options o;
    try {
        o = parse_synth_args(args);
    } catch (const usage_error& e) {
        // One line: the full usage would bury the reason (it is one `--help` away).
        std::cerr << "lorafleet-cli synth: " << e.what() << " (see lorafleet-cli synth --help)\n";
        return 2;
    }

    const auto start = std::chrono::steady_clock::now();
    int last_step = -1;
    const auto progress = [&](int done, int total) {
        // A line every 5% (every adapter for small fleets), and always the last one.
        const int step = static_cast<int>(static_cast<long long>(done) * 20 / total);
        if (done > 0 && (step != last_step || done == total))
            std::fprintf(stderr, "synth: %d/%d adapters (%d%%)\n", done, total,
                         static_cast<int>(static_cast<long long>(done) * 100 / total));
        last_step = step;
        return true;
    };
    synth::synth_result r;
    try {
        r = synth::write_synthetic_fleet(o, progress);
    } catch (const usage_error& e) { // e.g. a non-empty output folder
        std::cerr << "lorafleet-cli synth: " << e.what() << "\n";
        return 2;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "wrote %d adapters to %s: %llu bytes (%.1f MB) in %.2f s (rank %d, %s, layers %d, modules %zu, "
        "clusters %d)\n",
        o.adapters, o.out_dir.string().c_str(), static_cast<unsigned long long>(r.bytes), r.bytes / 1e6,
        seconds, o.rank, dtype_flag(o.dtype).c_str(), r.plan.layers, o.modules.size(), r.plan.clusters);
    return 0;
}

const command_registrar reg{{"synth", "write a synthetic fleet of PEFT LoRA adapters with planted clusters",
                             synth_usage, &run_synth}};

} // namespace
} // namespace lorafleet::cli
