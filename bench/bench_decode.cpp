// Decode benchmark: base-model decode tokens/s of the CPU forward pass (transformer::forward, one new token
// per sequence per step) at several batch sizes, next to the memory-bandwidth bound. A decode step reads
// every weight once whatever the batch (model_weights::parameter_bytes()), so
//     tokens/s <= bandwidth / bytes per step × batch.
// Two bandwidths are measured here, each as the best of 3 passes of a float sum (AVX2 where the CPU has
// it, split over as many threads as the forward pass uses):
// DRAM streaming over a large array (default 512 MB), and cache-resident re-reading of an array the size
// of the weights. A model whose weights fit in cache (the 2.6 MB demo model does) is bounded by the second
// one, not the first; the table prints both and says which applies. KV-cache and activation traffic are
// not counted, so the bound is an upper bound, loose for long contexts.
// Single-threaded driver (bandwidth passes start their own threads); the transformer uses its own worker pool
// (--threads, default one per hardware thread).
//
// usage: bench_decode [--model DIR] [--batches 1,8,32] [--steps 64] [--prompt 8] [--threads N]
//                     [--bandwidth-mb 512]
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/transformer.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <immintrin.h>

using namespace lorafleet;
using namespace lorafleet::serve;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Sum with independent partial sums so the loop is bound by loads, not by the add latency (AVX2 when the
// CPU has it, as the forward pass's gemm does; a scalar sum would measure the adder, not the memory).
[[gnu::target("avx2")]] float sum_floats_avx2(const float* a, std::size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    float t = 0.0f;
    for (float v : lanes)
        t += v;
    for (; i < n; ++i)
        t += a[i];
    return t;
}

float sum_floats(const float* a, std::size_t n) {
    static const bool avx2 = __builtin_cpu_supports("avx2");
    if (avx2) return sum_floats_avx2(a, n);
    float s[8] = {};
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; ++k)
            s[k] += a[i + std::size_t(k)];
    for (; i < n; ++i)
        s[0] += a[i];
    float t = 0.0f;
    for (float v : s)
        t += v;
    return t;
}

std::atomic<float> g_sink{0.0f}; // keeps the sums alive

// Read bandwidth in bytes/s over an array of `bytes` split over `threads` threads (as the forward pass
// splits the weights), each pass re-reading it `repeats` times; best of 3.
double read_bandwidth(std::size_t bytes, int repeats, int threads) {
    std::vector<float> a(std::max<std::size_t>(bytes / sizeof(float), std::size_t(threads) * 32));
    for (std::size_t i = 0; i < a.size(); ++i)
        a[i] = float(i & 1023) * 1e-3f; // touch every page before timing
    const std::size_t chunk = a.size() / std::size_t(threads);
    auto pass = [&] {
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t)
            pool.emplace_back([&, t] {
                float s = 0.0f;
                for (int r = 0; r < repeats; ++r)
                    s += sum_floats(a.data() + std::size_t(t) * chunk, chunk);
                g_sink = g_sink + s;
            });
        for (auto& th : pool)
            th.join();
    };
    pass(); // warm (caches for the resident case)
    double best = 0.0;
    for (int p = 0; p < 3; ++p) {
        const auto t0 = clock_type::now();
        pass();
        const double dt = seconds_since(t0);
        best = std::max(best, double(chunk * std::size_t(threads) * sizeof(float)) * repeats / dt);
    }
    return best;
}

std::vector<int> parse_ints(const char* text) {
    std::vector<int> out;
    std::string s(text);
    std::size_t pos = 0;
    while (pos <= s.size()) {
        const std::size_t comma = std::min(s.find(',', pos), s.size());
        out.push_back(std::atoi(s.substr(pos, comma - pos).c_str()));
        pos = comma + 1;
    }
    return out;
}

int argmax(std::span<const float> v) {
    return int(std::max_element(v.begin(), v.end()) - v.begin());
}

struct decode_result {
    int batch = 0;
    int steps = 0;
    double seconds = 0.0;
    double tokens_per_s() const { return double(batch) * steps / seconds; }
};

// Prefills `batch` sequences with `prompt` tokens each (one step), then times `steps` greedy decode
// steps (after one untimed warm-up step).
decode_result run_decode(transformer& model, int batch, int steps, int prompt) {
    const auto& g = model.geometry();
    const int context = prompt + steps + 1;
    kv_cache cache =
        model.make_cache(kv_cache::block_bytes(g) * std::uint64_t(batch) * std::uint64_t(context / 16 + 2));
    std::vector<std::vector<int>> prompts(static_cast<std::size_t>(batch));
    std::vector<sequence_step> step(static_cast<std::size_t>(batch));
    for (int b = 0; b < batch; ++b) {
        cache.add_sequence(b);
        auto& p = prompts[std::size_t(b)];
        for (int i = 0; i < prompt; ++i)
            p.push_back(1 + (b * 131 + i * 17) % (g.vocab_size - 1));
        step[std::size_t(b)].seq_id = b;
        step[std::size_t(b)].tokens = p;
    }
    std::vector<int> next(static_cast<std::size_t>(batch));
    auto logits = model.forward(cache, step);
    auto decode_once = [&] {
        for (int b = 0; b < batch; ++b) {
            next[std::size_t(b)] = argmax(logits.last(b));
            step[std::size_t(b)].tokens = std::span<const int>(&next[std::size_t(b)], 1);
        }
        logits = model.forward(cache, step);
    };
    decode_once(); // warm-up
    const auto t0 = clock_type::now();
    for (int s = 0; s < steps; ++s)
        decode_once();
    return {batch, steps, seconds_since(t0)};
}

} // namespace

int main(int argc, char** argv) {
    std::string model_dir = std::string(LORAFLEET_SOURCE_DIR) + "/resources/models/tinystories-656k";
    std::vector<int> batches{1, 8, 32};
    int steps = 64, prompt = 8, threads = 0, bandwidth_mb = 512;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--model" && has_value)
            model_dir = argv[++i];
        else if (a == "--batches" && has_value)
            batches = parse_ints(argv[++i]);
        else if (a == "--steps" && has_value)
            steps = std::atoi(argv[++i]);
        else if (a == "--prompt" && has_value)
            prompt = std::atoi(argv[++i]);
        else if (a == "--threads" && has_value)
            threads = std::atoi(argv[++i]);
        else if (a == "--bandwidth-mb" && has_value)
            bandwidth_mb = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr,
                         "usage: bench_decode [--model DIR] [--batches 1,8,32] [--steps 64] [--prompt 8]\n"
                         "                    [--threads N] [--bandwidth-mb 512]\n");
            return 2;
        }
    }
    if (steps < 1 || prompt < 1 || bandwidth_mb < 1 || batches.empty() ||
        std::any_of(batches.begin(), batches.end(), [](int b) { return b < 1; })) {
        std::fprintf(stderr, "bench_decode: --steps, --prompt, --bandwidth-mb and batches must be >= 1\n");
        return 2;
    }
    try {
        const auto weights = model_weights::load(model_dir);
        const auto& g = weights->geometry();
        if (prompt + steps + 1 > weights->max_context()) {
            std::fprintf(stderr, "bench_decode: prompt + steps exceeds the model's context of %d\n",
                         weights->max_context());
            return 2;
        }
        transformer model(weights, threads);
        const double step_bytes = double(weights->parameter_bytes());

        const std::size_t dram_bytes = std::size_t(bandwidth_mb) << 20;
        const int bw_threads = threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()));
        const double bw_dram = read_bandwidth(dram_bytes, 1, bw_threads);
        // Re-read the weight-sized array often enough for ~1 GB of traffic per pass.
        const int resident_repeats = std::max(1, int(1e9 / std::max(step_bytes, 1.0)));
        const double bw_resident = read_bandwidth(std::size_t(step_bytes), resident_repeats, bw_threads);
        long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
        if (llc <= 0) llc = sysconf(_SC_LEVEL2_CACHE_SIZE);

        std::printf("model %s: %d layers, d_model %d, vocab %d; weights read per decode step %.2f MB\n",
                    model_dir.c_str(), g.num_layers, g.hidden_size, g.vocab_size, step_bytes / 1e6);
        std::printf("read bandwidth (best of 3, %d threads): DRAM %.1f GB/s over %d MB; cache-resident "
                    "%.1f GB/s over %.2f MB\n",
                    bw_threads, bw_dram / 1e9, bandwidth_mb, bw_resident / 1e9, step_bytes / 1e6);
        // Whether the weights stay cached between steps: they fit in the last-level cache (a size from
        // sysconf; unknown counts as not fitting).
        const bool fits_cache = llc > 0 && step_bytes <= double(llc);
        std::printf("last-level cache %.1f MB: the weights %s\n\n", double(std::max(llc, 0L)) / 1e6,
                    fits_cache ? "stay in cache between steps: the DRAM bound does not bind, the "
                                 "cache-resident bound is the relevant one"
                               : "do not fit in cache: the DRAM bound applies");
        std::printf("threads %d (0: one per hardware thread); %d timed decode steps after a %d-token "
                    "prefill and 1 warm-up step\n\n",
                    threads, steps, prompt);
        std::printf("%6s %12s %12s %16s %16s %9s\n", "batch", "ms/step", "tokens/s", "DRAM bound t/s",
                    "cache bound t/s", "% bound");
        for (int b : batches) {
            const auto r = run_decode(model, b, steps, prompt);
            const double dram_bound = bw_dram / step_bytes * b;
            const double resident_bound = bw_resident / step_bytes * b;
            const double relevant = fits_cache ? resident_bound : dram_bound;
            std::printf("%6d %12.3f %12.0f %16.0f %16.0f %8.1f%%\n", b, 1e3 * r.seconds / r.steps,
                        r.tokens_per_s(), dram_bound, resident_bound, 100.0 * r.tokens_per_s() / relevant);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_decode: %s\n", e.what());
        return 1;
    }
    return 0;
}
