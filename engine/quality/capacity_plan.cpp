// Capacity plan: see capacity_plan.hpp.
#include "engine/quality/capacity_plan.hpp"

#include "engine/core/error.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "engine/serve/model/transformer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>

namespace lorafleet::quality {

namespace fs = std::filesystem;
using nlohmann::json;

double step_times::step_seconds(double batch, double prefill_tokens_per_step) const {
    double decode = 0;
    if (!decode_s.empty()) {
        auto hi = decode_s.lower_bound(int(std::ceil(batch)));
        if (hi == decode_s.end()) { // beyond the largest: linear through the last two points
            const auto last = std::prev(decode_s.end());
            if (last == decode_s.begin()) {
                decode = last->second * batch / last->first;
            } else {
                const auto before = std::prev(last);
                const double slope = (last->second - before->second) / double(last->first - before->first);
                decode = last->second + slope * (batch - last->first);
            }
        } else if (hi == decode_s.begin() || hi->first == batch) {
            decode = hi->second;
        } else {
            const auto lo = std::prev(hi);
            const double f = (batch - lo->first) / double(hi->first - lo->first);
            decode = lo->second + f * (hi->second - lo->second);
        }
    }
    return decode + prefill_tokens_per_step * prefill_per_token_s;
}

fleet_bytes bank_fleet_bytes(const bank::compressed_bank& b) {
    fleet_bytes f;
    f.has_bank = true;
    f.adapters = int(b.adapters.size());
    std::uint64_t raw_total = 0;
    for (std::size_t i = 0; i < b.adapters.size(); ++i) {
        std::uint64_t floats = 0;
        for (std::size_t m = 0; m < b.modules.size(); ++m)
            if (b.adapters[i].has_module(m))
                floats += std::uint64_t(b.adapters[i].source_rank) *
                          std::uint64_t(b.modules[m].d_in + b.modules[m].d_out);
        raw_total += floats * 4;
        f.raw_max = std::max(f.raw_max, floats * 4);
    }
    f.raw_mean = b.adapters.empty() ? 0 : raw_total / b.adapters.size();
    for (const auto& per_cluster : b.bases)
        for (const auto& basis : per_cluster)
            f.bank_bases += (basis.u.size() + basis.vt.size()) * 4;
    f.bank_core = std::uint64_t(b.core_size()) * b.modules.size() * 4;
    return f;
}

fleet_bytes raw_fleet_bytes(const std::vector<serve::adapter_info>& adapters) {
    fleet_bytes f;
    f.adapters = int(adapters.size());
    std::uint64_t total = 0;
    for (const auto& a : adapters) {
        const auto bytes = a.bytes;
        total += bytes;
        f.raw_max = std::max(f.raw_max, bytes);
    }
    f.raw_mean = adapters.empty() ? 0 : total / adapters.size();
    return f;
}

fs::path default_step_cache() {
    const char* xdg = std::getenv("XDG_CACHE_HOME");
    if (xdg && *xdg) return fs::path(xdg) / "lorafleet/step-times.json";
    const char* home = std::getenv("HOME");
    return fs::path(home && *home ? home : "/tmp") / ".cache/lorafleet/step-times.json";
}

namespace {

constexpr int prompt_len = 16;
constexpr int decode_repeats = 12;
const int batches[] = {1, 8, 32, 64};

struct measured_mode {
    serve::AdapterProvider* provider = nullptr; // null: the base model
    std::vector<int> slots;                     // adapter slot of sequence s: slots[s % size]
    step_times times;
};

// Decode steps of B sequences (each its own adapter slot, or the base) and a prefill step, for every mode
// in turn, repeat by repeat, so a load that drifts meanwhile lands on every mode alike.
void measure(const std::shared_ptr<const serve::model_weights>& weights, int threads,
             std::vector<measured_mode>& modes) {
    using clock = std::chrono::steady_clock;
    serve::transformer model(weights, threads);
    const auto& g = weights->geometry();
    const int len = prompt_len + decode_repeats + 2;
    const std::uint64_t per_seq = serve::kv_cache::block_bytes(g, 16) * std::uint64_t((len + 15) / 16);
    std::vector<serve::kv_cache> caches;
    for (std::size_t m = 0; m < modes.size(); ++m)
        caches.push_back(model.make_cache(per_seq * 65));
    std::vector<int> tokens(std::size_t(64) * prompt_len);
    for (std::size_t i = 0; i < tokens.size(); ++i)
        tokens[i] = int((i * 7919 + 17) % std::size_t(std::max(2, g.vocab_size - 1))) + 1;
    std::vector<int> next(64, 1);
    std::vector<std::size_t> loaded(modes.size(), 0), loads(modes.size(), 0);
    std::vector<double> load_time(modes.size(), 0.0);
    for (const int B : batches) {
        std::vector<std::vector<serve::sequence_step>> batch(modes.size());
        std::vector<std::vector<double>> times(modes.size());
        for (std::size_t m = 0; m < modes.size(); ++m) {
            std::vector<int> wanted;
            for (int s = 0; s < B; ++s) {
                caches[m].add_sequence(s);
                const auto& sl = modes[m].slots;
                const int slot = sl.empty() ? -1 : sl[std::size_t(s) % sl.size()];
                if (slot >= 0 && std::find(wanted.begin(), wanted.end(), slot) == wanted.end())
                    wanted.push_back(slot);
                batch[m].push_back(
                    {s,
                     std::span<const int>(tokens.data() + std::size_t(s) * prompt_len, prompt_len),
                     {},
                     slot,
                     false});
            }
            if (modes[m].provider && modes[m].provider->prepare(wanted) != wanted.size())
                throw validation_error(
                    "plan", "the adapters of a measured step do not fit the adapter cache together");
            const auto t0 = clock::now();
            model.forward(caches[m], batch[m], modes[m].provider);
            const double prefill = std::chrono::duration<double>(clock::now() - t0).count();
            if (B == 8) modes[m].times.prefill_per_token_s = prefill / double(B * prompt_len);
            for (int s = 0; s < B; ++s)
                batch[m][std::size_t(s)].tokens = std::span<const int>(&next[std::size_t(s)], 1);
        }
        for (int r = 0; r < decode_repeats; ++r)
            for (std::size_t m = 0; m < modes.size(); ++m) {
                const auto t1 = clock::now();
                model.forward(caches[m], batch[m], modes[m].provider);
                times[m].push_back(std::chrono::duration<double>(clock::now() - t1).count());
            }
        for (std::size_t m = 0; m < modes.size(); ++m) {
            std::sort(times[m].begin(), times[m].end());
            modes[m].times.decode_s[B] =
                times[m][times[m].size() / 2]; // the median: what a run under the same load sees
            for (int s = 0; s < B; ++s)
                caches[m].free_sequence(s);
        }
    }
}

json times_json(const step_times& t) {
    json d = json::object();
    for (const auto& [b, s] : t.decode_s)
        d[std::to_string(b)] = s;
    return {{"decode_s", d}, {"prefill_per_token_s", t.prefill_per_token_s}, {"load_s", t.load_s}};
}

std::optional<step_times> times_from_json(const json& j) {
    if (!j.is_object() || !j.contains("decode_s") || !j["decode_s"].is_object() ||
        !j.contains("prefill_per_token_s") || !j["prefill_per_token_s"].is_number())
        return std::nullopt;
    step_times t;
    for (const auto& [k, v] : j["decode_s"].items()) {
        if (!v.is_number() || v.get<double>() <= 0) return std::nullopt;
        try {
            t.decode_s[std::stoi(k)] = v.get<double>();
        } catch (...) {
            return std::nullopt;
        }
    }
    t.prefill_per_token_s = j["prefill_per_token_s"].get<double>();
    if (j.contains("load_s") && j["load_s"].is_number()) t.load_s = j["load_s"].get<double>();
    if (t.decode_s.empty()) return std::nullopt;
    return t;
}

std::vector<int> first_slots(serve::AdapterProvider& p, std::size_t n) {
    std::vector<int> out;
    for (const auto& a : p.list()) {
        if (out.size() == n) break;
        out.push_back(a.slot);
    }
    return out;
}

} // namespace

step_model load_or_measure_steps(std::shared_ptr<const serve::model_weights> weights,
                                 serve::AdapterProvider* raw, serve::AdapterProvider* compressed,
                                 const std::string& fleet_key, int threads, const fs::path& cache_file,
                                 bool remeasure) {
    const auto& g = weights->geometry();
    const std::string model_key = g.name + "/" + std::to_string(g.hidden_size) + "x" +
                                  std::to_string(g.num_layers) + "/v" + std::to_string(g.vocab_size) +
                                  "/cpu/threads" + std::to_string(threads);
    json cache = json::object();
    std::error_code ec;
    if (fs::exists(cache_file, ec)) {
        try {
            cache = json::parse(io::read_text_file(cache_file, io::max_json_file_bytes, "step-time cache"));
            if (!cache.is_object()) cache = json::object();
        } catch (const std::exception&) {
            cache = json::object(); // a damaged cache is re-measured, never trusted
        }
    }
    step_model out;
    out.from_cache = true;
    const std::vector<std::pair<std::string, serve::AdapterProvider*>> wanted_modes = [&] {
        std::vector<std::pair<std::string, serve::AdapterProvider*>> v{{"base", nullptr}};
        if (raw) v.emplace_back("raw", raw);
        if (compressed) v.emplace_back("compressed", compressed);
        return v;
    }();
    auto key_of = [&](const std::string& mode) {
        return model_key + "/" + mode + (mode == "base" ? "" : "/" + fleet_key);
    };
    bool all_cached = !remeasure;
    for (const auto& [mode, provider] : wanted_modes) {
        std::optional<step_times> t;
        if (!remeasure && cache.contains(key_of(mode))) t = times_from_json(cache[key_of(mode)]);
        if (t)
            out.modes[mode] = *t;
        else
            all_cached = false;
    }
    bool changed = false;
    if (!all_cached) {
        // Every wanted mode measured together (interleaved), so their ratios hold under the same load.
        out.from_cache = false;
        std::vector<measured_mode> modes;
        for (const auto& [mode, provider] : wanted_modes)
            modes.push_back({provider, provider ? first_slots(*provider, 64) : std::vector<int>{}, {}});
        measure(weights, threads, modes);
        for (std::size_t m = 0; m < modes.size(); ++m) {
            out.modes[wanted_modes[m].first] = modes[m].times;
            cache[key_of(wanted_modes[m].first)] = times_json(modes[m].times);
        }
        changed = true;
    }
    if (changed) {
        fs::create_directories(cache_file.parent_path(), ec);
        io::write_file_atomic(cache_file, cache.dump(1) + "\n");
    }
    return out;
}

capacity_plan make_plan(const serve::model_weights& weights, const fleet_bytes& fleet,
                        const step_model& steps, const plan_options& options) {
    capacity_plan p;
    const auto& g = weights.geometry();
    p.weight_bytes = weights.parameter_bytes();
    p.kv_bytes_per_token = serve::kv_cache::block_bytes(g, 16) / 16;
    p.fleet = fleet;
    p.memory_bytes = options.memory_bytes;
    p.concurrency = options.concurrency;
    p.sequence_tokens = options.sequence_tokens > 0 ? options.sequence_tokens
                                                    : options.prompt_tokens + options.generated_tokens;
    const auto room = [&](std::uint64_t used) {
        return options.memory_bytes > used ? options.memory_bytes - used : std::uint64_t(0);
    };
    const std::uint64_t beside = room(p.weight_bytes);
    p.raw_adapters_resident = fleet.raw_mean ? std::int64_t(beside / fleet.raw_mean) : 0;
    if (fleet.has_bank && fleet.bank_core)
        p.compressed_adapters_resident =
            std::int64_t(room(p.weight_bytes + fleet.bank_bases) / fleet.bank_core);
    const std::uint64_t bank_total =
        fleet.has_bank ? fleet.bank_bases + fleet.bank_core * std::uint64_t(fleet.adapters) : 0;
    p.kv_left_bytes = room(p.weight_bytes + bank_total);
    p.concurrent_sequences = std::int64_t(
        p.kv_left_bytes / (p.kv_bytes_per_token * std::uint64_t(std::max(1, p.sequence_tokens))));
    const double B = std::max(1, options.concurrency);
    const double prefill = B * double(options.prompt_tokens) / double(std::max(1, options.generated_tokens));
    for (const char* mode : {"base", "raw", "compressed"}) {
        mode_prediction m;
        m.mode = mode;
        const auto it = steps.modes.find(mode);
        if (it != steps.modes.end()) {
            m.measured = true;
            double s = it->second.step_seconds(B, prefill);
            if (m.mode == "raw" && fleet.adapters > 0) {
                const double n = fleet.adapters;
                const double held = options.raw_cache_bytes > 0 && fleet.raw_mean > 0
                                        ? double(std::min<std::int64_t>(
                                              std::int64_t(options.raw_cache_bytes / fleet.raw_mean),
                                              p.raw_adapters_resident))
                                        : double(p.raw_adapters_resident);
                m.miss_rate = 1.0 - std::min(1.0, held / n);
                if (options.requests > 0) {
                    const double first_uses = n * (1.0 - std::pow(1.0 - 1.0 / n, options.requests));
                    m.miss_rate = std::max(m.miss_rate, std::min(1.0, first_uses / options.requests));
                }
                s += B / double(std::max(1, options.generated_tokens)) * m.miss_rate * it->second.load_s;
            }
            m.step_ms = s * 1e3;
            m.tokens_per_s = s > 0 ? B / s : 0;
        }
        p.modes.push_back(m);
    }
    return p;
}

json capacity_plan::to_json() const {
    json modes_json = json::array();
    for (const auto& m : modes)
        modes_json.push_back({{"mode", m.mode},
                              {"measured", m.measured},
                              {"tokens_per_s", m.measured ? json(m.tokens_per_s) : json()},
                              {"step_ms", m.measured ? json(m.step_ms) : json()},
                              {"miss_rate", m.miss_rate}});
    return {{"weight_bytes", weight_bytes},
            {"kv_bytes_per_token", kv_bytes_per_token},
            {"adapters", fleet.adapters},
            {"raw_adapter_bytes", fleet.raw_mean},
            {"raw_adapter_bytes_max", fleet.raw_max},
            {"bank_bases_bytes", fleet.bank_bases},
            {"bank_core_bytes", fleet.bank_core},
            {"memory_bytes", memory_bytes},
            {"raw_adapters_resident", raw_adapters_resident},
            {"compressed_adapters_resident", compressed_adapters_resident},
            {"kv_left_bytes", kv_left_bytes},
            {"sequence_tokens", sequence_tokens},
            {"concurrent_sequences", concurrent_sequences},
            {"concurrency", concurrency},
            {"modes", modes_json}};
}

} // namespace lorafleet::quality
