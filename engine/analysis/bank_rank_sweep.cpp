// sweep_bank_ranks (see bank_rank_sweep.hpp).
#include "engine/analysis/bank_rank_sweep.hpp"

#include "engine/analysis/bank_options.hpp"
#include "engine/compress/module_sample.hpp"
#include "engine/compress/peft_module_source.hpp"
#include "engine/core/error.hpp"
#include "engine/io/fleet.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <unordered_map>

namespace lorafleet::analysis {

namespace {

// One cluster's members as a source restricted to the sampled modules they have.
struct cluster_sweep {
    std::vector<std::size_t> bank_index; // [member] -> adapter index in the bank
    std::unique_ptr<compress::PeftModuleSource> source;
    std::unique_ptr<compress::ModuleSubsetSource> sample;
};

} // namespace

bank_sweep_result sweep_bank_ranks(const bank::compressed_bank& bank, const io::fleet& fleet,
                                   compress::CompressBackend& backend, const bank_sweep_options& options,
                                   const compress::progress_callback& progress) {
    const bank_settings settings = bank_compression_settings(bank);
    bank_sweep_result out;

    std::unordered_map<std::string, std::shared_ptr<const io::peft_adapter>> byName;
    for (const auto& a : fleet)
        if (a) byName.emplace(a->name, a);

    // The module sample, by path, over the bank's modules.
    const auto picked = compress::sample_modules(bank.modules.size(), options.sample_modules, options.seed);
    std::set<std::string> sampled;
    for (std::size_t m : picked) {
        sampled.insert(bank.modules[m].path);
        out.modules.push_back(bank.modules[m].path);
    }

    // Members per bank cluster, and the bank's own error on the sample for the same adapters.
    const int k = std::max(bank.clusters, 1);
    std::vector<io::fleet> members(static_cast<std::size_t>(k));
    std::vector<cluster_sweep> sweeps(static_cast<std::size_t>(k));
    int maxSourceRank = 0;
    double bankSum = 0;
    std::size_t bankCounted = 0;
    for (std::size_t i = 0; i < bank.adapters.size(); ++i) {
        const auto& a = bank.adapters[i];
        const auto it = byName.find(a.name);
        if (it == byName.end() || a.cluster < 0 || a.cluster >= k) continue;
        members[std::size_t(a.cluster)].push_back(it->second);
        sweeps[std::size_t(a.cluster)].bank_index.push_back(i);
        maxSourceRank = std::max(maxSourceRank, it->second->max_rank());
        double sum = 0;
        int counted = 0;
        for (std::size_t m : picked)
            if (m < a.errors.size() && std::isfinite(a.errors[m])) {
                sum += a.errors[m];
                ++counted;
            }
        if (counted > 0) {
            bankSum += sum / counted;
            ++bankCounted;
        }
        ++out.adapters;
    }
    if (out.adapters == 0) throw usage_error("rank sweep", "none of the bank's adapters is in the fleet");
    out.bank_error_on_sample = bankCounted ? bankSum / double(bankCounted) : 0.0;

    std::int64_t cap = std::numeric_limits<std::int64_t>::max();
    for (int c = 0; c < k; ++c) {
        auto& s = sweeps[std::size_t(c)];
        if (members[std::size_t(c)].empty()) continue;
        s.source = std::make_unique<compress::PeftModuleSource>(members[std::size_t(c)], options.threads);
        std::vector<std::size_t> mine;
        for (std::size_t m = 0; m < s.source->module_count(); ++m)
            if (sampled.count(s.source->module(m).name)) mine.push_back(m);
        if (mine.empty()) continue; // no member has a sampled module: nothing to measure here
        s.sample = std::make_unique<compress::ModuleSubsetSource>(*s.source, mine);
        cap = std::min(cap, compress::max_rank_of(*s.sample));
        ++out.clusters;
    }
    if (out.clusters == 0)
        throw usage_error("rank sweep", "the swept adapters have none of the sampled modules");
    const std::int64_t top = std::min<std::int64_t>(cap, std::max<std::int64_t>(maxSourceRank, bank.rank));
    const auto ranks = compress::sweep_ranks(top, bank.rank);

    compress::compress_options step = settings.options;
    step.clusters = 1;
    const double steps = double(ranks.size()) * double(out.clusters);
    double done = 0;
    for (std::int64_t rank : ranks) {
        step.jd.rank = rank;
        compress::rank_sweep_point point;
        point.rank = rank;
        double sum = 0;
        std::size_t counted = 0;
        for (auto& s : sweeps) {
            if (!s.sample) continue;
            compress::progress_callback inner;
            if (progress)
                inner = [&](const compress::progress_info& info) {
                    compress::progress_info outer = info;
                    outer.fraction = (done + std::clamp(info.fraction, 0.0, 1.0)) / steps;
                    outer.stage = "rank " + std::to_string(rank);
                    outer.eta_seconds = -1;
                    return progress(outer);
                };
            const auto result = compress::compress_fleet(*s.sample, backend, step, inner);
            for (double e : result.adapter_error) {
                if (std::isnan(e)) continue;
                sum += e;
                point.max_error = std::max(point.max_error, e);
                ++counted;
            }
            done += 1;
        }
        point.mean_error = counted ? sum / double(counted) : 0.0;
        out.points.push_back(point);
    }
    if (progress) {
        compress::progress_info info;
        info.fraction = 1.0;
        info.stage = "done";
        if (!progress(info)) throw cancelled_error("rank sweep", "cancelled");
    }
    return out;
}

} // namespace lorafleet::analysis
