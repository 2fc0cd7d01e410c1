// bench_serve_gpu: device serving throughput against the number of adapters, the paper's protocol
// (method.md §9) on random weights: Mistral-7B geometry, rank-16 adapters on q/k/v, requests
// with adapter ids drawn uniformly, short generations; three modes per fleet size N:
//   base        the base model alone (no adapter work);
//   compressed  a JD-Full bank resident on the device (clusters grow with N, up to 25; rank 16): per module
//               tokens segmented by cluster, shrink by V_c, per-token Σ_i, expand by U_c;
//   raw         each request's own A_i, B_i through a device LRU cache memory-matched to the compressed
//               bank (as many adapter pages as the bank's bytes hold), misses copied from host memory
//               (64 distinct host adapters stand for the fleet: the copy cost is the same).
// Requests run in waves of --batch sequences (prefill --prompt tokens, then --gen greedy tokens sampled on
// the device); in raw mode a wave keeps only requests whose adapters are resident after prepare() and
// defers the rest. Prints one table row per N. Without a usable CUDA device it says so and exits 0.
// --precision bf16|fp16|fp32 (default bf16: weights, KV cache, bank bases and LoRA factors stored in
// 16 bits, tensor-core GEMMs with fp32 accumulation); --graphs on|off (decode steps replayed from CUDA
// graphs, default on). Per mode it prints the decode steps' launches per step (kernels + cuBLAS calls the
// host issued) and the device's idle share (1 - stream time between the step's first and last work /
// host wall time of the step, from device_step_stats).
// Single-threaded; everything runs on the device transformer's stream.
#include "kernels/device_probe.hpp"
#include "kernels/serve_device_model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <vector>

using namespace lorafleet::kernels;

namespace {

struct options {
    std::string geometry = "mistral-7b";
    int requests = 256;
    int batch = 64;
    int prompt = 16;
    int gen = 16;
    int rank = 16;
    std::vector<int> adapters = {1, 8, 64, 256, 1024};
    device_precision precision = device_precision::bf16;
    bool graphs = true;
};

[[noreturn]] void fail(const char* what, const serve_status& s) {
    std::fprintf(stderr, "bench_serve_gpu: %s: %s: %s (code %d)\n", what, s.api, s.message, s.code);
    std::exit(1);
}
void check(const serve_status& s, const char* what) {
    if (!s.ok()) fail(what, s);
}

// Fast deterministic fill (xorshift64*), uniform in [-scale, scale).
void fill(std::vector<float>& v, std::uint64_t seed, float scale) {
    std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (float& f : v) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        const double u = double((x * 0x2545f4914f6cdd1dull) >> 11) * 0x1p-53;
        f = float((2.0 * u - 1.0) * scale);
    }
}

device_model_geometry geometry_named(const std::string& name) {
    device_model_geometry g;
    if (name == "mistral-7b") {
        g.hidden = 4096;
        g.layers = 32;
        g.heads = 32;
        g.kv_heads = 8;
        g.head_dim = 128;
        g.intermediate = 14336;
        g.vocab = 32000;
        g.rope_theta = 1000000.0;
        g.rms_eps = 1e-5f;
    } else if (name == "small") { // a quick smoke run
        g.hidden = 512;
        g.layers = 4;
        g.heads = 8;
        g.kv_heads = 2;
        g.head_dim = 64;
        g.intermediate = 1536;
        g.vocab = 4096;
    } else {
        std::fprintf(stderr, "bench_serve_gpu: unknown --geometry %s (mistral-7b or small)\n", name.c_str());
        std::exit(2);
    }
    return g;
}

const int adapted_kinds[] = {0, 1, 2}; // q, k, v

struct request {
    int adapter = -1; // -1: base
};

struct run_result {
    double seconds = 0;
    long long tokens = 0;
    long long deferred = 0; // raw: requests pushed to a later wave because their adapter did not fit
    double decode_steps = 0, launches = 0, gpu_ms = 0, wall_ms = 0; // decode steps only

    double launches_per_step() const { return decode_steps > 0 ? launches / decode_steps : 0; }
    double idle_share() const { return wall_ms > 0 ? std::max(0.0, 1.0 - gpu_ms / wall_ms) : 0; }
};

// Runs every request in waves; `prepare` (raw mode) returns how many of the wave's distinct slots are
// resident (a prefix of the list it is given).
run_result serve(device_transformer& model, const options& o, const std::vector<request>& reqs,
                 device_adapters* adapters, device_lora_cache* cache) {
    const int bs = model.kv_block_size();
    const int blocks_per_seq = (o.prompt + o.gen + bs - 1) / bs;
    std::deque<request> queue(reqs.begin(), reqs.end());
    run_result r;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<int> tokens, positions, offsets, tables, out_rows, slots, next;
    while (!queue.empty()) {
        std::vector<request> wave;
        while (!queue.empty() && int(wave.size()) < o.batch) {
            wave.push_back(queue.front());
            queue.pop_front();
        }
        if (cache) {
            std::vector<int> distinct;
            for (const request& q : wave)
                if (std::find(distinct.begin(), distinct.end(), q.adapter) == distinct.end())
                    distinct.push_back(q.adapter);
            int resident = 0;
            check(cache->prepare(distinct.data(), int(distinct.size()), &resident, model.stream()),
                  "prepare");
            if (resident == 0)
                fail("prepare", {serve_bad_argument_code, "prepare", "no adapter fits the cache"});
            std::vector<request> kept;
            for (const request& q : wave) {
                const bool fits = std::find(distinct.begin(), distinct.begin() + resident, q.adapter) !=
                                  distinct.begin() + resident;
                if (fits) {
                    kept.push_back(q);
                } else {
                    queue.push_front(q);
                    ++r.deferred;
                }
            }
            wave.swap(kept);
        }
        const int w = int(wave.size());
        tables.clear();
        for (int i = 0; i < w * blocks_per_seq; ++i)
            tables.push_back(i);
        // Prefill: every sequence's prompt, logits of its last token.
        tokens.clear();
        positions.clear();
        offsets.clear();
        out_rows.clear();
        slots.clear();
        for (int s = 0; s < w; ++s) {
            for (int p = 0; p < o.prompt; ++p) {
                tokens.push_back((s * 131 + p * 7 + 1) % 1000 + 1);
                positions.push_back(p);
                offsets.push_back(s * blocks_per_seq);
                slots.push_back(wave[std::size_t(s)].adapter);
            }
            out_rows.push_back(s * o.prompt + o.prompt - 1);
        }
        device_step st;
        st.n = int(tokens.size());
        st.tokens = tokens.data();
        st.positions = positions.data();
        st.table_offset = offsets.data();
        st.tables = tables.data();
        st.tables_len = int(tables.size());
        st.out_rows = out_rows.data();
        st.rows = w;
        st.token_adapter = adapters ? slots.data() : nullptr;
        next.assign(std::size_t(w), 0);
        const std::vector<sampling_row_params> greedy(static_cast<std::size_t>(w)); // temperature 0
        const std::vector<double> no_draw(std::size_t(w), 0.0);
        const int vocab = geometry_named(o.geometry).vocab;
        check(model.forward_sample(st, adapters, greedy.data(), no_draw.data(), vocab, next.data()),
              "prefill");
        // Decode: one token per sequence per step.
        const device_step_stats before = model.step_stats();
        for (int g = 1; g < o.gen; ++g) {
            tokens.assign(next.begin(), next.end());
            positions.assign(std::size_t(w), o.prompt + g - 1);
            offsets.resize(std::size_t(w));
            out_rows.resize(std::size_t(w));
            slots.resize(std::size_t(w));
            for (int s = 0; s < w; ++s) {
                offsets[std::size_t(s)] = s * blocks_per_seq;
                out_rows[std::size_t(s)] = s;
                slots[std::size_t(s)] = wave[std::size_t(s)].adapter;
            }
            st.n = w;
            st.tokens = tokens.data();
            st.positions = positions.data();
            st.table_offset = offsets.data();
            st.out_rows = out_rows.data();
            st.token_adapter = adapters ? slots.data() : nullptr;
            check(model.forward_sample(st, adapters, greedy.data(), no_draw.data(), vocab, next.data()),
                  "decode");
        }
        const device_step_stats& after = model.step_stats();
        r.decode_steps += double(after.steps - before.steps);
        r.launches += double(after.launches - before.launches);
        r.gpu_ms += after.gpu_ms - before.gpu_ms;
        r.wall_ms += after.wall_ms - before.wall_ms;
        r.tokens += (long long)w * o.gen;
    }
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

std::vector<int> parse_list(const char* s) {
    std::vector<int> out;
    for (const char* p = s; *p;) {
        out.push_back(std::atoi(p));
        while (*p && *p != ',')
            ++p;
        if (*p == ',') ++p;
    }
    return out;
}

} // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "bench_serve_gpu: %s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--geometry")
            o.geometry = value();
        else if (a == "--requests")
            o.requests = std::atoi(value());
        else if (a == "--batch")
            o.batch = std::atoi(value());
        else if (a == "--prompt")
            o.prompt = std::atoi(value());
        else if (a == "--gen")
            o.gen = std::atoi(value());
        else if (a == "--rank")
            o.rank = std::atoi(value());
        else if (a == "--adapters")
            o.adapters = parse_list(value());
        else if (a == "--precision") {
            const std::string p = value();
            if (p == "bf16")
                o.precision = device_precision::bf16;
            else if (p == "fp16")
                o.precision = device_precision::fp16;
            else if (p == "fp32")
                o.precision = device_precision::fp32;
            else {
                std::fprintf(stderr, "bench_serve_gpu: --precision must be bf16, fp16 or fp32\n");
                return 2;
            }
        } else if (a == "--graphs") {
            const std::string v = value();
            if (v != "on" && v != "off") {
                std::fprintf(stderr, "bench_serve_gpu: --graphs must be on or off\n");
                return 2;
            }
            o.graphs = v == "on";
        } else {
            std::fprintf(stderr,
                         "usage: bench_serve_gpu [--geometry mistral-7b|small] [--requests N] [--batch B] "
                         "[--prompt P] [--gen G] [--rank R] [--adapters 1,8,64,256,1024] "
                         "[--precision bf16|fp16|fp32] [--graphs on|off]\n");
            return 2;
        }
    }
    if (o.requests < 1 || o.batch < 1 || o.prompt < 1 || o.gen < 1 || o.rank < 1 || o.adapters.empty()) {
        std::fprintf(stderr, "bench_serve_gpu: every count must be >= 1\n");
        return 2;
    }

    const cuda_probe_result probe = probe_cuda_devices();
    if (!probe.available) {
        std::printf("bench_serve_gpu: no usable CUDA device (%s); nothing measured.\n", probe.reason.c_str());
        return 0;
    }
    const device_model_geometry g = geometry_named(o.geometry);
    std::printf("device: %s (%lld MiB)\n", probe.devices.front().name.c_str(),
                probe.devices.front().memory_mb);
    std::printf("model: %s geometry, random %s weights; %d requests, waves of %d, prompt %d, %d generated "
                "tokens each; adapters rank %d on q/k/v, ids uniform\n",
                o.geometry.c_str(), precision_name(o.precision), o.requests, o.batch, o.prompt, o.gen,
                o.rank);
    std::printf("precision: %s (weights, KV cache, GEMM inputs, bank bases, LoRA factors); CUDA graphs: %s\n",
                precision_name(o.precision), o.graphs ? "on" : "off");

    std::unique_ptr<device_transformer> model;
    check(device_transformer::create(g, o.precision, model), "create");
    model->set_graphs(o.graphs);
    check(model->randomize(1, 0.02f), "randomize");
    const int bs = 16;
    check(model->allocate_kv(o.batch * ((o.prompt + o.gen + bs - 1) / bs), bs), "allocate_kv");
    std::printf("device memory for weights + KV: %.1f GiB\n",
                double(model->device_bytes()) / double(1ull << 30));

    const int r = o.rank;
    const int max_n = *std::max_element(o.adapters.begin(), o.adapters.end());
    const int max_clusters = 25;
    // Host bases for the largest cluster count; a run with k clusters uses the first k.
    struct host_module {
        int layer, kind, d_in, d_out;
        std::vector<std::vector<float>> u, vt; // [clusters]
    };
    std::vector<host_module> hm;
    for (int l = 0; l < g.layers; ++l)
        for (int kind : adapted_kinds) {
            host_module m{l, kind, g.d_in(kind), g.d_out(kind), {}, {}};
            for (int c = 0; c < std::min(max_clusters, max_n); ++c) {
                m.u.emplace_back(std::size_t(m.d_out) * r);
                m.vt.emplace_back(std::size_t(r) * m.d_in);
                fill(m.u.back(), 1000 + hm.size() * 64 + c, 1.0f / std::sqrt(float(r)));
                fill(m.vt.back(), 5000 + hm.size() * 64 + c, 1.0f / std::sqrt(float(m.d_in)));
            }
            hm.push_back(std::move(m));
        }
    // Host raw adapters (64 distinct stand for the fleet).
    const int distinct_raw = std::min(64, max_n);
    struct host_adapter {
        std::vector<std::vector<float>> a, b; // [hm index]
    };
    std::vector<host_adapter> raw(static_cast<std::size_t>(distinct_raw));
    std::size_t adapter_bytes = 0;
    for (int i = 0; i < distinct_raw; ++i)
        for (std::size_t m = 0; m < hm.size(); ++m) {
            raw[std::size_t(i)].a.emplace_back(std::size_t(r) * hm[m].d_in);
            raw[std::size_t(i)].b.emplace_back(std::size_t(hm[m].d_out) * r);
            fill(raw[std::size_t(i)].a.back(), 9000 + i * 1000 + m, 1.0f / std::sqrt(float(hm[m].d_in)));
            fill(raw[std::size_t(i)].b.back(), 90000 + i * 1000 + m, 0.01f);
            if (i == 0) adapter_bytes += (raw[0].a.back().size() + raw[0].b.back().size()) * sizeof(float);
        }
    // What one adapter occupies on the device (its factors in the device precision).
    const std::size_t stored_adapter_bytes = adapter_bytes / 4 * std::size_t(element_bytes(o.precision));

    auto requests_for = [&](int n) {
        std::vector<request> reqs(static_cast<std::size_t>(o.requests));
        std::uint64_t x = 0x1234567ull + std::uint64_t(n);
        for (auto& q : reqs) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            q.adapter = n > 0 ? int((x >> 33) % std::uint64_t(n)) : -1;
        }
        return reqs;
    };

    // Warm-up (cuBLAS heuristics, first-touch allocations), then the base model once.
    {
        options warm = o;
        warm.requests = std::min(o.batch, o.requests);
        warm.gen = 2;
        serve(*model, warm, std::vector<request>(std::size_t(warm.requests)), nullptr, nullptr);
    }
    const run_result base = serve(*model, o, std::vector<request>(std::size_t(o.requests)), nullptr, nullptr);
    const double base_tps = double(base.tokens) / base.seconds;
    std::printf("base: %.1f tokens/s (%.2f requests/s); decode: %.1f launches/step, GPU idle %.1f%%\n\n",
                base_tps, double(o.requests) / base.seconds, base.launches_per_step(),
                100 * base.idle_share());
    std::printf("%9s %9s %10s %10s %12s %8s %8s %6s %12s %8s %8s %6s %10s %9s\n", "adapters", "clusters",
                "bank MiB", "raw pages", "compr tok/s", "x base", "launch/s", "idle%", "raw tok/s", "x base",
                "launch/s", "idle%", "raw misses", "deferred");

    for (const int n : o.adapters) {
        const int k = std::clamp(int(std::lround(n / 40.0)), 1, std::min(max_clusters, n));
        // Compressed bank: clusters 0..k-1, adapters round-robin over them, random cores.
        std::vector<int> slot_cluster(static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i)
            slot_cluster[std::size_t(i)] = i % k;
        std::vector<std::vector<float>> cores(hm.size());
        std::vector<bank_module_source> sources;
        for (std::size_t m = 0; m < hm.size(); ++m) {
            cores[m].resize(std::size_t(n) * r * r);
            fill(cores[m], 70000 + m, 1.0f);
            bank_module_source s;
            s.layer = hm[m].layer;
            s.kind = hm[m].kind;
            s.d_in = hm[m].d_in;
            s.d_out = hm[m].d_out;
            for (int c = 0; c < k; ++c) {
                s.u.push_back(hm[m].u[std::size_t(c)].data());
                s.vt.push_back(hm[m].vt[std::size_t(c)].data());
            }
            s.cores = cores[m].data();
            sources.push_back(std::move(s));
        }
        std::unique_ptr<device_bank> bank;
        check(device_bank::create(g.layers, r, k, true, slot_cluster, sources, bank, o.precision),
              "device bank");
        const std::size_t bank_bytes = bank->device_bytes();
        const auto reqs = requests_for(n);
        const run_result comp = serve(*model, o, reqs, bank.get(), nullptr);
        bank.reset();

        // Raw, memory-matched: as many one-adapter pages as the bank's bytes.
        const int pages = std::max(1, int(bank_bytes / stored_adapter_bytes));
        device_lora_cache::loader load = [&](int slot, std::vector<lora_module_source>& out) {
            const host_adapter& h = raw[std::size_t(slot % distinct_raw)];
            for (std::size_t m = 0; m < hm.size(); ++m)
                out.push_back({hm[m].layer, hm[m].kind, r, 2.0f, h.a[m].data(), h.b[m].data()});
            return serve_status{};
        };
        std::unique_ptr<device_lora_cache> cache;
        check(device_lora_cache::create(g, adapter_bytes, pages, load, cache, o.precision), "lora cache");
        const run_result rawr = serve(*model, o, reqs, cache.get(), cache.get());
        const double ctps = double(comp.tokens) / comp.seconds, rtps = double(rawr.tokens) / rawr.seconds;
        std::printf("%9d %9d %10.1f %10d %12.1f %8.2f %8.1f %6.1f %12.1f %8.2f %8.1f %6.1f %10llu %9lld\n", n,
                    k, double(bank_bytes) / double(1 << 20), pages, ctps, ctps / base_tps,
                    comp.launches_per_step(), 100 * comp.idle_share(), rtps, rtps / base_tps,
                    rawr.launches_per_step(), 100 * rawr.idle_share(), (unsigned long long)cache->misses(),
                    rawr.deferred);
        std::fflush(stdout);
    }
    return 0;
}
