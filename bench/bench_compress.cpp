// Compression benchmark on Mistral-7B geometry (q_proj 4096x4096, k/v_proj 1024x4096, rank-16 adapters):
// seconds per module, peak RSS and mean error for JD-Full / JD-Diag with 1 and 25 clusters, fleets of
// 100 and 1000 adapters, over a few layers (scaled to 32 layers in the table), plus a dense baseline
// that forms every ΔW_i (small n) to show what the factored algorithm saves.
//
// The fleet is generated on the fly per module (planted groups + noise, like `lorafleet-cli synth`), so
// memory holds one module's factors, as with real adapters streamed from disk; generation time is
// excluded from the fit time and reported apart.
//
// usage: bench_compress [--adapters 100,1000] [--layers 1] [--clusters 1,25] [--methods jd-full,jd-diag]
//                       [--rank 16] [--dense-adapters 16] [--threads N] [--backend cpu|cuda|auto|cpu,cuda]
//                       [--gpu-memory-mb MB] [--in-memory] [--pass-log] [--factor-dtype f32|bf16|fp16]
// --pass-log prints (to stderr) every clustering pass: wall and CPU seconds, fit / residual / error split,
// fits, sweeps, fits reused from the last pass, residual columns recomputed, objective and adapters moved.
// --in-memory generates the whole fleet first, in parallel, and keeps it (1000 adapters x 96 modules:
// ~38 GB): each of the driver's passes then costs what the backend does with the factors, not the
// generation (a single thread makes ~2 s of factors per layer and pass, more than a GPU computes with them).
// --factor-dtype rounds every generated factor value to bf16 / fp16 and back to fp32 (round to nearest
// even, engine/core/float16.hpp: what reading a bf16 / fp16 PEFT file gives); default f32 = unrounded.
// For the cuda backend a second table gives the resident module cache's counters per run: hits, misses,
// evictions, compactions (modules narrowed into the cache: exact 16-bit storage, e.g. with --factor-dtype
// bf16), and at the end of the run the cached modules, how many of them are 16-bit, their MB and the MB
// that saves against fp32.
// "wall s" is the whole compress_fleet call; "s/module" leaves out the time spent waiting for loads.
// With two backends (e.g. --backend cuda,cpu) every configuration runs on each and a final table gives
// the time ratio of the first backend to each other one.
#include "engine/backend/compress_backends.hpp"
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/ops_backend.hpp"
#include "engine/compress/parallel.hpp"
#include "engine/core/float16.hpp"
#include "engine/core/random.hpp"

#include <cblas.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

using namespace lorafleet;
using namespace lorafleet::compress;
using namespace lorafleet::backend;

namespace {

enum class factor_dtype { f32, bf16, fp16 };

// Planted fleet: adapter i belongs to group i % groups; per module and group, factors live in random
// rank-r input/output subspaces; noise_rel of relative Frobenius noise per adapter; every value rounded
// to `dtype` storage (f32: as generated).
class PlantedStreamSource final : public ModuleSource {
public:
    PlantedStreamSource(std::size_t adapters, int groups, int layers, int rank, double noise,
                        std::uint64_t seed, factor_dtype dtype = factor_dtype::f32)
        : m_n(adapters), m_groups(groups), m_rank(rank), m_noise(noise), m_seed(seed), m_dtype(dtype) {
        for (int l = 0; l < layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
            m_shapes.push_back({p + "q_proj", 4096, 4096});
            m_shapes.push_back({p + "k_proj", 1024, 4096});
            m_shapes.push_back({p + "v_proj", 1024, 4096});
        }
    }
    std::size_t adapter_count() const override { return m_n; }
    std::size_t module_count() const override { return m_shapes.size(); }
    module_shape module(std::size_t m) const override { return m_shapes.at(m); }

    module_batch load(std::size_t m) override {
        if (!m_cache.empty()) return m_cache.at(m); // a view sharing the generated storage
        return generate(m);
    }

    // --in-memory: every module generated now on `threads` threads and kept; load() then hands out views,
    // so a pass costs what the backend does with the factors (the upload included), not their making.
    // Returns the bytes held.
    std::size_t generate_all(int threads) {
        m_cache.assign(m_shapes.size(), module_batch{});
        std::atomic<std::size_t> next{0};
        std::vector<std::thread> pool;
        for (int t = 0; t < std::max(threads, 1); ++t)
            pool.emplace_back([&] {
                for (std::size_t m = next++; m < m_shapes.size(); m = next++)
                    m_cache[m] = generate(m);
            });
        for (auto& th : pool)
            th.join();
        std::size_t bytes = 0;
        for (const auto& b : m_cache)
            for (const auto& f : b.adapters)
                bytes += (f.a.size() + f.b.size()) * sizeof(float);
        return bytes;
    }

private:
    // Deterministic in (seed, m): the same factors on any thread, in any order. OpenBLAS runs
    // single-threaded here, as in the engine's backends: its threaded sgemm splits the work by whatever
    // thread count is current (the prefetch thread generates while the backend's guard may or may not be
    // alive), and a different split gives different low bits, so each pass would see slightly different
    // factors and the clustering could take a different number of passes from run to run.
    module_batch generate(std::size_t m) const {
        blas_threads_guard single(1);
        const auto& s = m_shapes.at(m);
        const int r = m_rank;
        // Group bases [d_in, r] / [d_out, r], entries N(0, 1/d).
        std::vector<std::vector<float>> p(m_groups), q(m_groups);
        for (int g = 0; g < m_groups; ++g) {
            auto rs = random_stream::derive(m_seed, {m, std::uint64_t(g), 1});
            p[g].resize(std::size_t(s.d_in) * r);
            q[g].resize(std::size_t(s.d_out) * r);
            for (auto& x : p[g])
                x = float(rs.normal() / std::sqrt(double(s.d_in)));
            for (auto& x : q[g])
                x = float(rs.normal() / std::sqrt(double(s.d_out)));
        }
        std::vector<owned_factors> factors(m_n);
        for (std::size_t i = 0; i < m_n; ++i) {
            const int g = int(i % std::size_t(m_groups));
            auto rs = random_stream::derive(m_seed, {m, std::uint64_t(i), 2});
            std::vector<float> c(std::size_t(r) * r), d(std::size_t(r) * r);
            for (auto& x : c)
                x = float(rs.normal());
            for (auto& x : d)
                x = float(rs.normal() * 0.01);
            auto& f = factors[i];
            f.adapter = i;
            f.rank = r;
            f.a.assign(std::size_t(r) * s.d_in, 0.0f);
            f.b.assign(std::size_t(s.d_out) * r, 0.0f);
            // A = C Pᵀ [r, d_in]; B = Q D [d_out, r] (row-major).
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, int(s.d_in), r, 1.0f, c.data(), r,
                        p[g].data(), r, 0.0f, f.a.data(), int(s.d_in));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(s.d_out), r, r, 1.0f, q[g].data(), r,
                        d.data(), r, 0.0f, f.b.data(), r);
            add_noise(f.a, rs);
            add_noise(f.b, rs);
            round_to_dtype(f.a);
            round_to_dtype(f.b);
        }
        return make_owned_module_batch(s.name, s.d_out, s.d_in, std::move(factors));
    }

    void add_noise(std::vector<float>& x, random_stream& rs) const {
        double norm2 = 0;
        for (float v : x)
            norm2 += double(v) * v;
        const double sigma = m_noise * std::sqrt(norm2 / double(x.size()));
        for (auto& v : x)
            v += float(sigma * rs.normal());
    }
    // A bf16 / fp16 PEFT file's values, as read into fp32.
    void round_to_dtype(std::vector<float>& x) const {
        if (m_dtype == factor_dtype::bf16)
            for (auto& v : x)
                v = bf16_to_f32(f32_to_bf16(v));
        else if (m_dtype == factor_dtype::fp16)
            for (auto& v : x)
                v = f16_to_f32(f32_to_f16(v));
    }
    std::size_t m_n;
    int m_groups, m_rank;
    double m_noise;
    std::uint64_t m_seed;
    factor_dtype m_dtype;
    std::vector<module_shape> m_shapes;
    std::vector<module_batch> m_cache; // --in-memory
};

// User + system CPU seconds of this process so far (less sensitive than wall time to other load).
double cpu_seconds() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= s.size()) {
        const auto comma = s.find(',', start);
        out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

// The straightforward baseline: form every ΔW_i = B_i A_i densely, then run the same HOOI sweeps with
// dense products (ΔW_i V and ΔW_iᵀ U per adapter). Returns seconds for `sweeps` sweeps of one module.
double dense_baseline_seconds(const module_batch& batch, int rank, int sweeps) {
    const int d_out = int(batch.d_out), d_in = int(batch.d_in);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::vector<float>> dense(batch.size(), std::vector<float>(std::size_t(d_out) * d_in));
    for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto& f = batch.adapters[i];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d_out, d_in, int(f.rank), 1.0f, f.b.data(),
                    int(f.rank), f.a.data(), d_in, 0.0f, dense[i].data(), d_in);
    }
    std::vector<float> u(std::size_t(d_out) * rank, 1e-3f), v(std::size_t(d_in) * rank, 1e-3f);
    std::vector<float> xv(std::size_t(d_out) * rank), xu(std::size_t(d_in) * rank);
    std::vector<float> mu(std::size_t(d_out) * d_out), mv(std::size_t(d_in) * d_in);
    for (int s = 0; s < sweeps; ++s) {
        // M_U = Σ (ΔW_i V)(ΔW_i V)ᵀ; the eigen-solve is left out (it favours the baseline).
        std::fill(mu.begin(), mu.end(), 0.0f);
        for (const auto& w : dense) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d_out, rank, d_in, 1.0f, w.data(), d_in,
                        v.data(), rank, 0.0f, xv.data(), rank);
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, d_out, rank, 1.0f, xv.data(), rank, 1.0f,
                        mu.data(), d_out);
        }
        std::fill(mv.begin(), mv.end(), 0.0f);
        for (const auto& w : dense) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d_in, rank, d_out, 1.0f, w.data(), d_in,
                        u.data(), rank, 0.0f, xu.data(), rank);
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, d_in, rank, 1.0f, xu.data(), rank, 1.0f,
                        mv.data(), d_in);
        }
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --pass-log: where each pass's time went, how many sweeps its fits took and what the reassignment did.
void print_pass_log(const compression_result& r) {
    std::fprintf(stderr, "  pass log (%d passes; features %.1f s):\n", r.timing.passes, r.timing.feature_s);
    std::fprintf(stderr,
                 "  | pass | stage | wall s | CPU s | fit s | residual s | error s | load s | fits | "
                 "sweeps (max, limit) | converged | reused fits | residual columns | objective | moved |\n");
    int p = 0;
    for (const auto& rec : r.timing.pass_log)
        std::fprintf(stderr,
                     "  | %d | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %d | %d (%d, %d) | %d | %d | "
                     "%d | %.6f | %d |\n",
                     ++p, rec.stage.c_str(), rec.seconds, rec.cpu_s, rec.fit_s, rec.residual_s, rec.error_s,
                     rec.load_s, rec.fits, rec.sweeps, rec.max_sweeps, rec.sweep_limit, rec.converged,
                     rec.reused, rec.residual_columns, rec.objective, rec.moved);
}

// The CUDA ops behind a backend, or null (the CPU backend).
CudaLinalgOps* cuda_ops_of(CompressBackend& backend) {
    auto* ops = dynamic_cast<OpsBackend*>(&backend);
    return ops ? dynamic_cast<CudaLinalgOps*>(&ops->ops()) : nullptr;
}

} // namespace

int main(int argc, char** argv) {
    std::string adapters = "100,1000", clusters = "1,25", methods = "jd-full,jd-diag";
    std::string backends = "cpu";
    int layers = 1, rank = 16, dense_n = 16, threads = 0;
    std::size_t gpu_memory_mb = 0;
    bool in_memory = false, pass_log = false;
    std::string dtype_name = "f32";
    for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (k == "--in-memory") {
            in_memory = true;
            continue;
        }
        if (k == "--pass-log") {
            pass_log = true;
            continue;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "%s needs a value\n", k.c_str());
            return 2;
        }
        const std::string v = argv[++i];
        if (k == "--adapters")
            adapters = v;
        else if (k == "--clusters")
            clusters = v;
        else if (k == "--methods")
            methods = v;
        else if (k == "--layers")
            layers = std::stoi(v);
        else if (k == "--rank")
            rank = std::stoi(v);
        else if (k == "--dense-adapters")
            dense_n = std::stoi(v);
        else if (k == "--threads")
            threads = std::stoi(v);
        else if (k == "--backend")
            backends = v;
        else if (k == "--gpu-memory-mb")
            gpu_memory_mb = std::stoul(v);
        else if (k == "--factor-dtype")
            dtype_name = v;
        else {
            std::fprintf(stderr, "unknown option %s\n", k.c_str());
            return 2;
        }
    }
    if (dtype_name != "f32" && dtype_name != "bf16" && dtype_name != "fp16") {
        std::fprintf(stderr, "--factor-dtype must be f32, bf16 or fp16\n");
        return 2;
    }
    const factor_dtype dtype = dtype_name == "bf16"   ? factor_dtype::bf16
                               : dtype_name == "fp16" ? factor_dtype::fp16
                                                      : factor_dtype::f32;
    std::vector<std::unique_ptr<CompressBackend>> engines;
    try {
        for (const auto& b : split(backends))
            engines.push_back(make_compress_backend(b, threads, gpu_memory_mb));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_compress: %s\n", e.what());
        return 1;
    }
    if (engines.empty()) {
        std::fprintf(stderr, "bench_compress: --backend names no backend\n");
        return 2;
    }
    auto& backend = engines.front();
    const int modules = 3 * layers;
    std::printf(
        "Mistral-7B geometry (q 4096x4096, k/v 1024x4096), rank-16 adapters in 25 planted groups + 5%% "
        "noise, %d layer(s) = %d modules measured, backend(s) %s%s\n\n",
        layers, modules, backends.c_str(),
        dtype == factor_dtype::f32 ? "" : (", factors rounded to " + dtype_name).c_str());
    std::printf(
        "| backend | adapters | method  | clusters | s/module | CPU s/module (incl. generation) | est. 32 "
        "layers (96 modules) | wall s | passes | mean error | "
        "peak RSS MB | fit / residual / error / features s | waiting for loads s (excluded) |\n");
    std::printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
    struct row {
        std::string config;
        std::vector<double> seconds; // per backend
    };
    std::vector<row> rows;
    std::vector<std::string> resident_rows; // cuda runs: the resident cache's counters
    for (const auto& n_text : split(adapters))
        for (const auto& method : split(methods))
            for (const auto& k_text : split(clusters)) {
                row rw{n_text + " adapters, " + method + ", " + k_text + " clusters", {}};
                for (auto& engine : engines) {
                    const std::size_t n = std::stoul(n_text);
                    const int k = std::stoi(k_text);
                    PlantedStreamSource source(n, 25, layers, 16, 0.05, 7, dtype);
                    if (in_memory) {
                        const auto g0 = std::chrono::steady_clock::now();
                        const int gen_threads =
                            threads > 0 ? threads : int(std::thread::hardware_concurrency());
                        const std::size_t bytes = source.generate_all(gen_threads);
                        std::fprintf(
                            stderr,
                            "bench_compress: %zu adapters x %d modules generated in memory: %.1f GB "
                            "in %.1f s on %d threads (not counted)\n",
                            n, modules, double(bytes) / 1e9,
                            std::chrono::duration<double>(std::chrono::steady_clock::now() - g0).count(),
                            gen_threads);
                    }
                    compress_options opt;
                    opt.jd.method = method == "jd-diag" ? jd_method::diag : jd_method::full;
                    opt.jd.rank = rank;
                    opt.clusters = k;
                    auto* cuda_ops = cuda_ops_of(*engine);
                    const auto rc0 =
                        cuda_ops ? cuda_ops->resident_counters() : CudaLinalgOps::resident_stats{};
                    const double cpu0 = cpu_seconds();
                    const auto t0 = std::chrono::steady_clock::now();
                    const auto r = compress_fleet(source, *engine, opt);
                    const double total =
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                    const double compute = total - r.timing.load_s;
                    rw.seconds.push_back(compute);
                    std::printf("| %s | %zu | %s | %d | %.2f | %.2f | %.1f min | %.1f | %d | %.4f | %.0f | "
                                "%.1f / %.1f / "
                                "%.1f / %.1f | %.1f |\n",
                                engine->name().c_str(), n, method.c_str(), r.k, compute / modules,
                                (cpu_seconds() - cpu0) / modules, compute / modules * 96 / 60.0, total,
                                r.timing.passes, r.mean_error, peak_rss_mb(), r.timing.fit_s,
                                r.timing.residual_s, r.timing.error_s, r.timing.feature_s, r.timing.load_s);
                    std::fflush(stdout);
                    if (pass_log) print_pass_log(r);
                    if (cuda_ops) {
                        const auto rc = cuda_ops->resident_counters();
                        char line[512];
                        std::snprintf(
                            line, sizeof line,
                            "| %s | %zu | %s | %d | %zu | %zu | %zu | %zu | %zu (%zu 16-bit) | %.0f | "
                            "%.0f | %.0f |",
                            engine->name().c_str(), n, method.c_str(), r.k, rc.hits - rc0.hits,
                            rc.misses - rc0.misses, rc.evictions - rc0.evictions,
                            rc.compactions - rc0.compactions, rc.modules, rc.compact_modules,
                            double(rc.bytes) / 1e6, double(rc.compact_saved_bytes) / 1e6,
                            double(rc.budget) / 1e6);
                        resident_rows.emplace_back(line);
                    }
                }
                rows.push_back(std::move(rw));
            }
    if (!resident_rows.empty()) {
        std::printf("\nResident module cache (cuda; counts of this run, cache contents at its end):\n");
        std::printf("| backend | adapters | method | clusters | hits | misses | evictions | compactions | "
                    "cached modules | resident MB | saved by 16-bit MB | budget MB |\n");
        std::printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (const auto& line : resident_rows)
            std::printf("%s\n", line.c_str());
    }
    if (engines.size() > 1) {
        std::printf("\nTime ratio (compute seconds, %s / other):\n", engines.front()->name().c_str());
        for (const auto& rw : rows)
            for (std::size_t b = 1; b < engines.size(); ++b)
                std::printf("  %s: %s %.2f s, %s %.2f s, ratio %.3f (%.1fx faster)\n", rw.config.c_str(),
                            engines.front()->name().c_str(), rw.seconds[0], engines[b]->name().c_str(),
                            rw.seconds[b], rw.seconds[0] / rw.seconds[b], rw.seconds[b] / rw.seconds[0]);
    }

    // Factored vs dense on one q_proj module (--dense-adapters 0 skips it).
    if (dense_n <= 0) return 0;
    PlantedStreamSource small(std::size_t(dense_n), 1, 1, 16, 0.05, 7);
    auto batch = small.load(0);
    compress_options opt;
    opt.jd.rank = rank;
    const auto t0 = std::chrono::steady_clock::now();
    const auto fit = backend->fit_jd_full(batch, all_positions(batch), opt.jd);
    const double factored = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int sweeps = std::max(1, fit.sweeps);
    const double dense = dense_baseline_seconds(batch, rank, sweeps);
    std::printf(
        "\nFactored vs dense (one 4096x4096 module, %d adapters, %d HOOI sweeps): factored %.3f s, dense "
        "baseline %.3f s (forming ΔW_i + dense products, eigen-solves not even counted): %.0fx faster\n",
        dense_n, sweeps, factored, dense, dense / factored);
    return 0;
}
