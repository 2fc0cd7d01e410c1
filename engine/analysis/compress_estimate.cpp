// The compression estimate (see compress_estimate.hpp).
#include "engine/analysis/compress_estimate.hpp"

#include "engine/compress/module_batch.hpp"
#include "engine/compress/module_source.hpp"
#include "engine/core/random.hpp"
#include "engine/io/fleet.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

namespace lorafleet::analysis {

fleet_shape shape_of(const io::fleet& fleet) {
    fleet_shape out;
    std::map<std::string, std::size_t> index;
    for (const auto& a : fleet) {
        if (!a) continue;
        ++out.adapters;
        for (const auto& m : a->modules) {
            auto [it, fresh] = index.emplace(m.path, out.modules.size());
            if (fresh) out.modules.push_back({m.path, m.d_out, m.d_in, 0, 0});
            auto& u = out.modules[it->second];
            ++u.adapters;
            u.max_source_rank = std::max(u.max_source_rank, m.rank);
            out.max_source_rank = std::max(out.max_source_rank, m.rank);
        }
    }
    for (const auto& m : out.modules)
        out.complete = out.complete && m.adapters == out.adapters;
    return out;
}

namespace {

// F16 values of a bank with `k` clusters (bases of at most min(k, holders) clusters per module).
std::uint64_t bank_values(const fleet_shape& f, std::int64_t r, bool full, int k) {
    std::uint64_t n = 0;
    const std::uint64_t core = full ? std::uint64_t(r * r) : std::uint64_t(r);
    for (const auto& m : f.modules) {
        const std::uint64_t clusters = std::min<std::uint64_t>(std::uint64_t(k), m.adapters);
        n += clusters * std::uint64_t(r) * std::uint64_t(m.d_out + m.d_in);
        n += std::uint64_t(f.adapters) * core;
    }
    return n;
}

} // namespace

compress_estimate estimate_compression(const fleet_shape& f, const compress::compress_options& o,
                                       double machine_speed) {
    compress_estimate e;
    const std::int64_t r = std::max<std::int64_t>(1, o.jd.rank);
    const bool full = o.jd.method == compress::jd_method::full;
    const int n = int(std::max<std::size_t>(1, f.adapters));
    const int kMin = o.clusters > 0 ? std::min(o.clusters, n) : 1;
    const int kMax = o.clusters > 0 ? kMin : std::min(std::max(1, o.max_clusters), n);
    e.bank_bytes_min = 2 * bank_values(f, r, full, kMin);
    e.bank_bytes_max = 2 * bank_values(f, r, full, kMax);
    e.bank_bytes_exact = o.clusters > 0 && f.complete;

    // Peak memory model at kMax.
    double result = 0, largestBatch = 0, workspace = 0;
    for (const auto& m : f.modules) {
        const double clusters = std::min<double>(kMax, double(m.adapters));
        result += 4.0 * (clusters * double(r) * double(m.d_out + m.d_in) +
                         double(f.adapters) * (full ? double(r * r) : double(r)));
        largestBatch = std::max(largestBatch, 4.0 * double(m.adapters) * double(m.max_source_rank) *
                                                  double(m.d_out + m.d_in));
        workspace =
            std::max(workspace, 8.0 * (double(m.d_out) * double(m.d_out) + double(m.d_in) * double(m.d_in)));
    }
    e.peak_bytes = std::uint64_t(2 * result + 2 * largestBatch + workspace);

    for (const auto& m : f.modules)
        e.work_units_per_pass += double(m.adapters) * double(m.d_out + m.d_in) *
                                 double(std::max<std::int64_t>(r, m.max_source_rank)) * double(r);
    const int perK = 2 + std::max(0, o.max_cluster_iterations); // feature pass + first fit + alternations
    if (o.clusters == 1) {
        e.min_passes = e.max_passes = 1;
    } else if (o.clusters > 1) {
        e.min_passes = 2;
        e.max_passes = perK;
    } else {
        // Automatic: k = 1 may already meet the target; else a search over k, each with its passes.
        const int tries = 1 + int(std::ceil(std::log2(double(std::max(2, kMax)))));
        e.min_passes = 1;
        e.max_passes = 1 + tries * perK;
    }
    if (machine_speed > 0) {
        e.seconds_min = e.work_units_per_pass * e.min_passes / machine_speed;
        e.seconds_max = e.work_units_per_pass * e.max_passes / machine_speed;
    }
    e.rank_at_least_source = f.max_source_rank > 0 && r >= f.max_source_rank;
    e.rank_above_source = f.max_source_rank > 0 && r > f.max_source_rank;
    return e;
}

double measure_machine_speed(compress::CompressBackend& backend) {
    constexpr std::size_t kAdapters = 32;
    constexpr std::int64_t kDim = 256, kRank = 16;
    compress::InMemoryModuleSource source(kAdapters);
    random_stream g(0xca11b);
    fleet_shape shape;
    shape.adapters = kAdapters;
    shape.max_source_rank = int(kRank);
    // Structured like a fine-tuned fleet (and the synthetic ones): every adapter's factors lie in one
    // shared rank-kRank subspace per side, plus 5% noise, so the fit converges as it does on real fleets
    // (Gaussian factors without structure need many more sweeps and would overstate the time ~10x).
    const auto gaussian = [&g](std::size_t n, double scale) {
        std::vector<float> v(n);
        for (auto& x : v)
            x = float(g.normal() * scale);
        return v;
    };
    for (int m = 0; m < 4; ++m) {
        const std::string name = "model.layers." + std::to_string(m) + ".self_attn.q_proj";
        const std::size_t index = source.add_module(name, kDim, kDim);
        shape.modules.push_back({name, kDim, kDim, kAdapters, int(kRank)});
        const auto q = gaussian(std::size_t(kDim * kRank), 1.0); // [d_out, r] shared column space
        const auto p = gaussian(std::size_t(kDim * kRank), 1.0); // [d_in, r] shared row space
        for (std::size_t a = 0; a < kAdapters; ++a) {
            const auto c = gaussian(std::size_t(kRank * kRank), 1.0);
            const auto d = gaussian(std::size_t(kRank * kRank), 1.0);
            compress::owned_factors f;
            f.adapter = a;
            f.rank = kRank;
            f.a = gaussian(std::size_t(kRank * kDim), 0.05); // A = C Pᵀ + noise   [r, d_in]
            f.b = gaussian(std::size_t(kDim * kRank), 0.05); // B = Q D + noise    [d_out, r]
            for (std::int64_t i = 0; i < kRank; ++i)
                for (std::int64_t j = 0; j < kDim; ++j)
                    for (std::int64_t t = 0; t < kRank; ++t) {
                        f.a[std::size_t(i * kDim + j)] +=
                            c[std::size_t(i * kRank + t)] * p[std::size_t(j * kRank + t)];
                        f.b[std::size_t(j * kRank + i)] +=
                            q[std::size_t(j * kRank + t)] * d[std::size_t(t * kRank + i)];
                    }
            source.set_factors(index, std::move(f));
        }
    }
    compress::compress_options o;
    o.jd.rank = kRank;
    o.clusters = 1;
    o.prefetch_modules = false;
    const auto t0 = std::chrono::steady_clock::now();
    compress::compress_fleet(source, backend, o);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double units = estimate_compression(shape, o, 0).work_units_per_pass;
    return units / std::max(seconds, 1e-6);
}

} // namespace lorafleet::analysis
