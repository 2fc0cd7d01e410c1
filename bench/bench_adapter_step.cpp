// Adapter-overhead benchmark: the cost of one decode step of the CPU forward pass with a compressed bank's
// adapters (every sequence its own adapter, drawn uniformly from the bank, seeded) against the same step
// of the base model, at several batch sizes. Both modes run the IDENTICAL step over and over (every
// sequence decodes one token at the same position, rewinding its KV cache), interleaved base /
// compressed, and the table reports the minimum and the median step time of each: the minimum is what the
// code costs when nothing else disturbs it, so the ratio stays meaningful on a loaded machine, where
// end-to-end throughput runs (bench-serve) swing by ±25%.
//
// usage: bench_adapter_step --bank BANK [--model DIR] [--batches 1,8,32,64] [--iterations 300]
//                           [--context 24] [--threads N] [--seed S] [--only base|compressed]
// --only times one mode (for a profiler; the other column then reads 0). [--only base|compressed]
#include "engine/core/error.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::serve;

namespace {

using clock_type = std::chrono::steady_clock;

std::vector<int> parse_list(const char* text) {
    std::vector<int> out;
    for (const char* p = text; *p;) {
        out.push_back(std::atoi(p));
        while (*p && *p != ',')
            ++p;
        if (*p == ',') ++p;
    }
    return out;
}

struct step_times {
    std::vector<double> base, compressed; // seconds per step
};

double min_of(std::vector<double> v) {
    return *std::min_element(v.begin(), v.end());
}
double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

step_times run_batch(transformer& model, AdapterProvider& bank, int batch, int iterations, int context,
                     std::mt19937_64& rng, const std::string& only) {
    const auto& g = model.geometry();
    kv_cache cache =
        model.make_cache(kv_cache::block_bytes(g) * std::uint64_t(batch) * std::uint64_t(context / 16 + 2));
    const auto adapters = bank.list();
    std::uniform_int_distribution<std::size_t> pick(0, adapters.size() - 1);
    std::vector<std::vector<int>> prompts(static_cast<std::size_t>(batch)),
        positions(static_cast<std::size_t>(batch));
    std::vector<int> slots(static_cast<std::size_t>(batch));
    std::vector<sequence_step> prefill(static_cast<std::size_t>(batch));
    for (int b = 0; b < batch; ++b) {
        cache.add_sequence(b);
        auto& p = prompts[std::size_t(b)];
        for (int i = 0; i < context; ++i)
            p.push_back(1 + (b * 131 + i * 17) % (g.vocab_size - 1));
        slots[std::size_t(b)] = adapters[pick(rng)].slot;
        prefill[std::size_t(b)] = {
            b, std::span<const int>(p.data(), std::size_t(context - 1)), {}, -1, false};
        positions[std::size_t(b)] = {context - 1};
    }
    model.forward(cache, prefill);
    bank.prepare(slots);

    // The timed step: every sequence decodes its last prompt token at position context - 1 (the cache is
    // rewound to that length each time, so every iteration does the same work).
    auto step_for = [&](bool with_adapters) {
        std::vector<sequence_step> step(static_cast<std::size_t>(batch));
        for (int b = 0; b < batch; ++b)
            step[std::size_t(b)] = {b, std::span<const int>(prompts[std::size_t(b)].data() + context - 1, 1),
                                    positions[std::size_t(b)], with_adapters ? slots[std::size_t(b)] : -1,
                                    false};
        return step;
    };
    const auto base_step = step_for(false), adapter_step = step_for(true);
    step_times t;
    auto timed = [&](const std::vector<sequence_step>& step, AdapterDelta* delta) {
        const auto t0 = clock_type::now();
        model.forward(cache, step, delta);
        return std::chrono::duration<double>(clock_type::now() - t0).count();
    };
    for (int w = 0; w < 5; ++w) { // warm-up
        timed(base_step, nullptr);
        timed(adapter_step, &bank);
    }
    for (int i = 0; i < iterations; ++i) {
        if (only != "compressed") t.base.push_back(timed(base_step, nullptr));
        if (only != "base") t.compressed.push_back(timed(adapter_step, &bank));
    }
    if (t.base.empty()) t.base.push_back(0.0);
    if (t.compressed.empty()) t.compressed.push_back(0.0);
    return t;
}

} // namespace

int main(int argc, char** argv) {
    std::string model_dir = std::string(LORAFLEET_SOURCE_DIR) + "/resources/models/tinystories-656k";
    std::string bank_dir;
    std::string only; // "", "base" or "compressed"
    std::vector<int> batches{1, 8, 32, 64};
    int iterations = 300, context = 24, threads = 0;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has = i + 1 < argc;
        if (a == "--model" && has)
            model_dir = argv[++i];
        else if (a == "--bank" && has)
            bank_dir = argv[++i];
        else if (a == "--batches" && has)
            batches = parse_list(argv[++i]);
        else if (a == "--iterations" && has)
            iterations = std::atoi(argv[++i]);
        else if (a == "--context" && has)
            context = std::atoi(argv[++i]);
        else if (a == "--threads" && has)
            threads = std::atoi(argv[++i]);
        else if (a == "--only" && has)
            only = argv[++i];
        else if (a == "--seed" && has)
            seed = std::strtoull(argv[++i], nullptr, 10);
        else {
            std::fprintf(
                stderr,
                "usage: bench_adapter_step --bank BANK [--model DIR] [--batches 1,8,32,64] "
                "[--iterations 300] [--context 24] [--threads N] [--seed S] [--only base|compressed]\n");
            return 2;
        }
    }
    if (bank_dir.empty() || iterations < 1 || context < 2 || batches.empty()) {
        std::fprintf(stderr, "bench_adapter_step: --bank is required (iterations >= 1, context >= 2)\n");
        return 2;
    }
    try {
        const auto weights = model_weights::load(model_dir);
        transformer model(weights, threads);
        const auto bank = open_bank_provider(bank_dir, weights->geometry());
        std::mt19937_64 rng(seed);
        std::printf("model %s, bank %s (%zu adapters), %d iterations per mode, context %d\n",
                    weights->geometry().name.c_str(), bank_dir.c_str(), bank->list().size(), iterations,
                    context);
        std::printf("%6s %12s %12s %12s %12s %10s %10s\n", "batch", "base min us", "base med us",
                    "compr min us", "compr med us", "min ratio", "med ratio");
        for (const int batch : batches) {
            const auto t = run_batch(model, *bank, batch, iterations, context, rng, only);
            const double bmin = min_of(t.base), bmed = median_of(t.base);
            const double cmin = min_of(t.compressed), cmed = median_of(t.compressed);
            // ratio = compressed tokens/s over base tokens/s = base time over compressed time
            std::printf("%6d %12.1f %12.1f %12.1f %12.1f %10.3f %10.3f\n", batch, bmin * 1e6, bmed * 1e6,
                        cmin * 1e6, cmed * 1e6, bmin / cmin, bmed / cmed);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_adapter_step: %s\n", e.what());
        return 1;
    }
    return 0;
}
