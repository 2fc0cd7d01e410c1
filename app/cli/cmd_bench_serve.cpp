// `lorafleet-cli bench-serve`: the serving benchmark of the paper's protocol — N asynchronous requests
// whose adapters are drawn uniformly (seeded) from the fleet, short generations, prompts taken from
// Shakespeare's sonnets — run through the continuous-batching engine in each mode one after another in
// this process: the fleet compressed (a bank), raw (PEFT adapters behind an LRU cache; with --bank, the
// bank's own adapters exported to a temporary folder and cached in as many bytes as the bank holds, so
// the comparison is memory-matched) and the base model alone. Every mode serves the same request list.
// Prints a table, or with --json one document {"runs": [...]} on stdout; progress on stderr.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/bank/bank_format.hpp"
#include "engine/bank/peft_export.hpp"
#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "engine/io/bundled_resources.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/serve/metrics/metrics_recorder.hpp"
#include "engine/serve/session/serving_session.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <malloc.h>
#include <mutex>
#include <optional>
#include <sstream>
#include <unistd.h>

namespace lorafleet::cli {
namespace {

namespace fs = std::filesystem;

const char* usage_text =
    "usage: lorafleet-cli bench-serve --model DIR (--bank BANK | --adapters DIR...) --requests N\n"
    "                                 --max-tokens T [--compare base,raw] [--concurrency C] [--prompts "
    "FILE]\n"
    "                                 [--adapter-cache-mb M] [--kv-cache-mb M] [--max-running R] [--seed S]\n"
    "                                 [--threads N] [--device cpu|cuda|auto] [--rounds K] [--stop-at-eos]\n"
    "                                 [--dtype auto|float32|bfloat16|float16] [--json]\n"
    "\n"
    "Serves N requests with adapters drawn uniformly from the fleet (seeded) through the continuous-\n"
    "batching engine and reports throughput, latency, memory and adapter-cache hit rate. Modes run one\n"
    "after another on the same requests: first the fleet as given (--bank: compressed, --adapters: raw),\n"
    "then each --compare mode.\n"
    "\n"
    "  --model DIR            the base model folder (HuggingFace format)\n"
    "  --bank BANK            a compressed bank (lorafleet-cli compress)\n"
    "  --adapters DIR         PEFT adapter folders, or folders holding them (repeatable)\n"
    "  --compare LIST         more modes: base (no adapters), raw (with --bank: the bank's adapters\n"
    "                         exported as PEFT and served raw, memory-matched), compressed (needs --bank)\n"
    "  --requests N           number of requests\n"
    "  --max-tokens T         tokens generated per request (EOS is ignored unless --stop-at-eos)\n"
    "  --concurrency C        requests in flight at most (default: all N at once)\n"
    "  --prompts FILE         prompts, separated by blank lines (default: the bundled sonnets)\n"
    "  --adapter-cache-mb M   raw mode's LRU cache (default: the bank's resident bytes with --bank,\n"
    "                         else 256)\n"
    "  --kv-cache-mb M        KV cache budget (default 256)\n"
    "  --max-running R        sequences in one batch at most (default 64)\n"
    "  --seed S               seed of the adapter and prompt draws (default 0)\n"
    "  --threads N            transformer threads (default: one per hardware thread)\n"
    "  --device D             where the forward pass runs: cpu (default), cuda, or auto (cuda when a\n"
    "                         device is usable, else cpu); printed on stderr\n"
    "  --dtype D              weights' precision: auto (the default: as stored in the checkpoint on the\n"
    "                         CPU; on a device float32 checkpoints become bfloat16), float32, bfloat16\n"
    "                         or float16\n"
    "  --rounds K             run the modes K times in turn (compressed, base, raw, compressed, ...) and\n"
    "                         report each mode's median round by tokens/s (default 1); on a noisy\n"
    "                         machine alternating rounds keep slow drifts out of the ratios\n"
    "  --stop-at-eos          end a request at EOS (token counts then vary by mode)\n"
    "  --json                 one JSON document on stdout: {\"runs\": [{\"mode\", \"adapters\",\n"
    "                         \"requests_per_s\", \"tokens_per_s\", \"p50_ms\", \"p99_ms\", \"peak_rss_mb\", "
    "...,\n"
    "                         \"rounds_tokens_per_s\": [one per round]}]}\n";

// ---- Prompts
// ------------------------------------------------------------------------------------------------ The
// bundled prompts: --prompts, else the bundled-resource lookup (engine/io/bundled_resources.hpp:
// $LORAFLEET_RESOURCES, PREFIX/share/lorafleet, the build tree, the source tree).
fs::path default_prompts() {
    const auto found = io::find_resource(io::sonnets_relative);
    if (found.path) return *found.path;
    throw io_error("sonnets.txt", io::not_found_message("The bundled prompts", io::sonnets_relative, found) +
                                      "; or pass --prompts FILE");
}

// Paragraphs separated by blank lines; a file without blank lines gives one prompt per line.
std::vector<std::string> read_prompts(const fs::path& file) {
    // Through io::read_text_file: a regular file of bounded size (a FIFO or a device is refused, never read).
    std::istringstream in(io::read_text_file(file, 16ull << 20, "prompts file"));
    std::vector<std::string> paragraphs, lines;
    std::string line, current;
    bool blank_seen = false;
    auto flush = [&] {
        if (!current.empty()) paragraphs.push_back(current);
        current.clear();
    };
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) {
            blank_seen = true;
            flush();
            continue;
        }
        lines.push_back(line);
        current += current.empty() ? line : "\n" + line;
    }
    flush();
    std::vector<std::string> out = blank_seen ? std::move(paragraphs) : std::move(lines);
    if (out.empty()) throw validation_error(path_string(file), "the prompts file holds no text");
    return out;
}

// ---- One run
// --------------------------------------------------------------------------------------------------
struct planned_request {
    int name_index = 0; // the adapter: an index into the sorted names (modulo their count)
    int prompt = 0;     // index into the prompts
};

struct run_report {
    std::string mode;
    int adapters = 0;
    int requests = 0, finished = 0, failed = 0;
    double seconds = 0, load_seconds = 0;
    std::uint64_t prompt_tokens = 0, completion_tokens = 0;
    double p50_ms = 0, p99_ms = 0, mean_ms = 0, ttft_p50_ms = 0, ttft_p99_ms = 0;
    double peak_rss_mb = 0, adapter_mb = 0;
    std::uint64_t hits = 0, misses = 0, evictions = 0;
    std::string first_error;
    double requests_per_s() const { return seconds > 0 ? finished / seconds : 0; }
    double tokens_per_s() const { return seconds > 0 ? double(completion_tokens) / seconds : 0; }
    double hit_rate() const { return hits + misses ? double(hits) / double(hits + misses) : -1; }
};

struct bench_setup {
    serve::served_model model;             // weights + tokenizer, shared by every mode's engine
    std::vector<std::vector<int>> prompts; // token ids, trimmed to fit the context
    std::vector<planned_request> plan;
    serve::engine_options options;
    int max_tokens = 0;
    bool stop_at_eos = false;
    int concurrency = 0;
    bool log_device = false; // --device given: say which device each mode ran on
};

run_report run_mode(const bench_setup& s, const std::string& mode,
                    std::unique_ptr<serve::AdapterProvider> provider, double load_seconds) {
    using clock = std::chrono::steady_clock;
    std::vector<std::string> names;
    if (provider)
        for (const auto& a : provider->list())
            names.push_back(a.name);
    std::sort(names.begin(), names.end()); // the draw maps to names, not slots: the same in every mode
    run_report r;
    r.mode = mode;
    r.adapters = static_cast<int>(names.size());
    r.requests = static_cast<int>(s.plan.size());
    r.load_seconds = load_seconds;
    if (provider && names.empty()) throw validation_error(mode, "the fleet has no adapters");

    const auto started = serve::start_engine(s.model, std::move(provider), s.options);
    serve::serving_engine& engine = *started;
    if (s.log_device)
        std::fprintf(stderr, "bench-serve: %s: device %s\n", mode.c_str(), engine.device_note().c_str());
    std::mutex mutex;
    std::condition_variable cv;
    int in_flight = 0, done = 0;
    std::vector<double> latency, ttft;
    std::vector<std::uint64_t> ids;
    std::string first_error;
    auto on_done = [&](const serve::completion_result& res) {
        std::lock_guard lock(mutex);
        --in_flight;
        ++done;
        if (res.status == serve::completion_status::finished) {
            ++r.finished;
            latency.push_back(res.total_s);
            ttft.push_back(res.ttft_s);
            r.prompt_tokens += std::uint64_t(res.prompt_tokens);
            r.completion_tokens += res.tokens.size();
        } else {
            ++r.failed;
            if (first_error.empty()) first_error = res.error;
        }
        cv.notify_all();
    };

    const auto t0 = clock::now();
    for (const planned_request& p : s.plan) {
        {
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return in_flight < s.concurrency; });
            ++in_flight;
        }
        serve::completion_request req;
        req.adapter = names.empty() ? std::string() : names[std::size_t(p.name_index) % names.size()];
        req.prompt = s.prompts[std::size_t(p.prompt)];
        req.params.max_tokens = s.max_tokens;
        req.params.stop_at_eos = s.stop_at_eos;
        req.on_done = on_done;
        engine.submit(std::move(req));
    }
    {
        std::unique_lock lock(mutex);
        cv.wait(lock, [&] { return done == r.requests; });
    }
    r.seconds = std::chrono::duration<double>(clock::now() - t0).count();
    const serve::metrics_snapshot m = engine.metrics();
    engine.shutdown(true);

    r.p50_ms = serve::percentile(latency, 0.50) * 1e3;
    r.p99_ms = serve::percentile(latency, 0.99) * 1e3;
    double sum = 0;
    for (double x : latency)
        sum += x;
    r.mean_ms = latency.empty() ? 0 : sum / double(latency.size()) * 1e3;
    r.ttft_p50_ms = serve::percentile(ttft, 0.50) * 1e3;
    r.ttft_p99_ms = serve::percentile(ttft, 0.99) * 1e3;
    r.peak_rss_mb = double(m.memory.peak_rss) / (1024.0 * 1024.0);
    r.adapter_mb = double(m.memory.adapters) / (1024.0 * 1024.0);
    r.hits = m.adapter_cache_hits;
    r.misses = m.adapter_cache_misses;
    r.evictions = m.adapter_cache_evictions;
    r.first_error = first_error;
    return r;
}

// A temporary folder removed on scope exit.
struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "lorafleet-bench-XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw io_error(tmpl, "cannot create a temporary folder");
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::string fixed(double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

int run_bench_serve(const std::vector<std::string>& args) {
    arg_parser p({"model", "bank", "adapters", "compare", "requests", "max-tokens", "concurrency", "prompts",
                  "adapter-cache-mb", "kv-cache-mb", "max-running", "seed", "threads", "device", "rounds",
                  "dtype"},
                 {"json", "stop-at-eos"});
    p.parse(args);
    if (!p.positionals().empty())
        throw usage_error("bench-serve", "unexpected argument '" + p.positionals()[0] + "'");
    const std::string model_dir = p.required("model");
    const bool has_bank = p.has("bank"), has_raw = p.has("adapters");
    if (has_bank == has_raw) throw usage_error("bench-serve", "give either --bank or --adapters");
    if (!p.has("requests")) throw usage_error("bench-serve", "--requests is required");
    if (!p.has("max-tokens")) throw usage_error("bench-serve", "--max-tokens is required");
    const int requests = static_cast<int>(p.get_int("requests", 0, 1, 1 << 24));
    const int max_tokens = static_cast<int>(p.get_int("max-tokens", 0, 1, 1 << 20));
    const std::vector<std::string> compare = split_list(p.get_or("compare", ""));
    for (const auto& c : compare) {
        if (c != "base" && c != "raw" && c != "compressed")
            throw usage_error("bench-serve", "--compare takes base, raw or compressed, not '" + c + "'");
        if (c == "compressed" && !has_bank)
            throw usage_error("bench-serve", "--compare compressed needs --bank");
    }
    const bool json = p.has("json");
    const std::uint64_t seed =
        static_cast<std::uint64_t>(p.get_int("seed", 0, 0, std::numeric_limits<long long>::max()));

    bench_setup s;
    s.max_tokens = max_tokens;
    s.stop_at_eos = p.has("stop-at-eos");
    s.concurrency = static_cast<int>(p.get_int("concurrency", requests, 1, 1 << 24));
    s.options.kv_cache_bytes = std::uint64_t(p.get_int("kv-cache-mb", 256, 1, 1 << 20)) << 20;
    s.options.max_running = static_cast<int>(p.get_int("max-running", 64, 1, 1 << 16));
    s.options.threads = static_cast<int>(p.get_int("threads", 0, 0, 1024));
    s.options.device = serve::parse_device_choice(p.get_or("device", "cpu"));
    s.log_device = p.has("device");
    s.options.metrics_window_s = 1e9; // the whole run is the window
    auto log = [&](const std::string& line) { std::fprintf(stderr, "bench-serve: %s\n", line.c_str()); };

    serve::model_load_options load_options;
    load_options.dtype = serve::parse_weight_dtype_choice(p.get_or("dtype", "auto"));
    s.model = serve::load_served_model(model_dir, load_options);
    const int context = s.model.weights->max_context();
    if (max_tokens >= context)
        throw usage_error("bench-serve",
                          "--max-tokens must be below the model's context of " + std::to_string(context));
    const fs::path prompts_file = p.has("prompts") ? fs::path(*p.get("prompts")) : default_prompts();
    for (const std::string& text : read_prompts(prompts_file)) {
        std::vector<int> ids = s.model.tokenizer->encode(text, true);
        if (ids.empty()) continue;
        if (int(ids.size()) + max_tokens > context) ids.resize(std::size_t(context - max_tokens));
        s.prompts.push_back(std::move(ids));
    }
    if (s.prompts.empty()) throw validation_error(path_string(prompts_file), "no prompt has any token");

    // The request list: uniform adapter index (mapped onto each mode's sorted names) and prompt, seeded.
    auto rng = random_stream::derive(seed, {stream_id("bench-serve")});
    for (int i = 0; i < requests; ++i) {
        planned_request r;
        r.name_index = static_cast<int>(rng.next_u64() % (1u << 30));
        r.prompt = static_cast<int>(rng.next_u64() % s.prompts.size());
        s.plan.push_back(r);
    }

    const auto& geometry = s.model.weights->geometry();
    const std::vector<fs::path> adapter_paths = [&] {
        std::vector<fs::path> v;
        for (const auto& a : p.all("adapters"))
            v.emplace_back(a);
        return v;
    }();
    std::optional<std::uint64_t> cache_bytes;
    if (p.has("adapter-cache-mb"))
        cache_bytes = std::uint64_t(p.get_int("adapter-cache-mb", 256, 1, 1 << 24)) << 20;

    std::vector<std::string> modes{has_bank ? "compressed" : "raw"};
    for (const auto& c : compare)
        if (std::find(modes.begin(), modes.end(), c) == modes.end()) modes.push_back(c);

    {
        // Warm-up (not reported): the first mode should not pay for faulting in the weights.
        bench_setup warm = s;
        warm.plan.resize(std::min<std::size_t>(warm.plan.size(), 4));
        warm.max_tokens = std::min(max_tokens, 4);
        run_mode(warm, "warm-up", nullptr, 0);
    }
    const int rounds = p.get_int("rounds", 1, 1, 1000);
    std::vector<std::vector<run_report>> by_mode(modes.size()); // [mode][round]
    std::uint64_t bank_resident = 0;
    std::optional<temp_dir> exported; // the bank's adapters as PEFT folders, for raw with --bank
    for (int round = 0; round < rounds; ++round)
        for (std::size_t mi = 0; mi < modes.size(); ++mi) {
            const std::string& mode = modes[mi];
            malloc_trim(0); // give the previous mode's memory back, so its peak RSS is its own
            const auto t0 = std::chrono::steady_clock::now();
            // Strict (no skipping): every mode must serve the whole fleet for the numbers to compare.
            serve::adapter_options ao;
            ao.skip_unusable = false;
            if (mode == "compressed") {
                ao.source = serve::adapter_source::bank_folder;
                ao.bank_dir = *p.get("bank");
            } else if (mode == "raw") {
                std::vector<fs::path> paths = adapter_paths;
                if (has_bank) {
                    if (!exported) {
                        exported.emplace();
                        log("exporting the bank's adapters as PEFT to " + exported->path.string());
                        const auto bank = bank::read_bank(*p.get("bank"));
                        bank::export_peft_adapters(bank, exported->path);
                    }
                    paths = {exported->path};
                }
                // Memory-matched: the raw cache gets what the compressed bank holds resident.
                const std::uint64_t bytes = cache_bytes ? *cache_bytes
                                            : has_bank  ? bank_resident
                                                        : (256ull << 20);
                ao.source = serve::adapter_source::raw_folders;
                ao.raw_paths = paths;
                ao.raw_cache_bytes = bytes;
            }
            std::unique_ptr<serve::AdapterProvider> provider = serve::open_adapters(ao, geometry).provider;
            if (mode == "compressed") bank_resident = provider->memory().resident_bytes;
            const double load_s =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            const std::string label =
                "mode " + mode + (rounds > 1 ? " (round " + std::to_string(round + 1) + ")" : std::string());
            log(label + ": " + std::to_string(requests) + " requests x " + std::to_string(max_tokens) +
                " tokens ...");
            by_mode[mi].push_back(run_mode(s, mode, std::move(provider), load_s));
            const run_report& r = by_mode[mi].back();
            log(label + ": " + fixed(r.requests_per_s(), 2) + " requests/s, " + fixed(r.tokens_per_s(), 1) +
                " tokens/s" +
                (r.failed ? ", " + std::to_string(r.failed) + " failed: " + r.first_error : ""));
        }
    // Each mode's median round by tokens/s (the lower middle one for an even count), whole.
    std::vector<run_report> reports;
    std::vector<std::vector<double>> round_rates(modes.size());
    for (std::size_t mi = 0; mi < modes.size(); ++mi) {
        std::vector<run_report> runs = by_mode[mi];
        for (const run_report& r : runs)
            round_rates[mi].push_back(r.tokens_per_s());
        std::sort(runs.begin(), runs.end(), [](const run_report& a, const run_report& b) {
            return a.tokens_per_s() < b.tokens_per_s();
        });
        reports.push_back(runs[(runs.size() - 1) / 2]);
    }

    if (json) {
        nlohmann::json runs = nlohmann::json::array();
        for (std::size_t mi = 0; mi < reports.size(); ++mi) {
            const run_report& r = reports[mi];
            nlohmann::json j;
            j["mode"] = r.mode;
            j["adapters"] = r.adapters;
            j["requests"] = r.requests;
            j["finished"] = r.finished;
            j["failed"] = r.failed;
            j["max_tokens"] = max_tokens;
            j["seconds"] = r.seconds;
            j["load_seconds"] = r.load_seconds;
            j["requests_per_s"] = r.requests_per_s();
            j["tokens_per_s"] = r.tokens_per_s();
            j["prompt_tokens"] = r.prompt_tokens;
            j["completion_tokens"] = r.completion_tokens;
            j["p50_ms"] = r.p50_ms;
            j["p99_ms"] = r.p99_ms;
            j["mean_ms"] = r.mean_ms;
            j["ttft_p50_ms"] = r.ttft_p50_ms;
            j["ttft_p99_ms"] = r.ttft_p99_ms;
            j["peak_rss_mb"] = r.peak_rss_mb;
            j["adapter_mb"] = r.adapter_mb;
            j["cache_hits"] = r.hits;
            j["cache_misses"] = r.misses;
            j["cache_evictions"] = r.evictions;
            j["cache_hit_rate"] = r.hit_rate() < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.hit_rate());
            j["rounds_tokens_per_s"] = round_rates[mi];
            if (!r.first_error.empty()) j["first_error"] = r.first_error;
            runs.push_back(j);
        }
        nlohmann::json doc;
        doc["runs"] = runs;
        doc["model"] = model_dir;
        doc["seed"] = seed;
        doc["concurrency"] = s.concurrency;
        doc["rounds"] = rounds;
        std::cout << doc.dump(2) << "\n";
    } else {
        std::printf("%-11s %8s %10s %10s %9s %9s %12s %10s %8s\n", "mode", "adapters", "requests/s",
                    "tokens/s", "p50 ms", "p99 ms", "peak RSS MB", "adapter MB", "hit rate");
        for (const run_report& r : reports)
            std::printf("%-11s %8d %10.2f %10.1f %9.1f %9.1f %12.1f %10.2f %8s\n", r.mode.c_str(), r.adapters,
                        r.requests_per_s(), r.tokens_per_s(), r.p50_ms, r.p99_ms, r.peak_rss_mb, r.adapter_mb,
                        r.hit_rate() < 0 ? "-" : fixed(r.hit_rate(), 3).c_str());
    }
    for (const auto& runs : by_mode)
        for (const run_report& r : runs)
            if (r.failed) return 1;
    return 0;
}

const command_registrar reg{
    {"bench-serve", "benchmark serving a fleet: compressed vs raw vs base", usage_text, &run_bench_serve}};

} // namespace
} // namespace lorafleet::cli
