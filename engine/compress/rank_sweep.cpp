// Error-versus-rank sweep (see rank_sweep.hpp).
#include "engine/compress/rank_sweep.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lorafleet::compress {

std::vector<std::int64_t> sweep_ranks(std::int64_t max_rank, std::int64_t extra) {
    std::vector<std::int64_t> ranks;
    if (max_rank < 1) return ranks;
    for (std::int64_t r = 1; r < max_rank; r *= 2)
        ranks.push_back(r);
    ranks.push_back(max_rank);
    if (extra >= 1 && extra <= max_rank) ranks.push_back(extra);
    std::sort(ranks.begin(), ranks.end());
    ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
    return ranks;
}

std::int64_t max_rank_of(const ModuleSource& source) {
    std::int64_t best = std::numeric_limits<std::int64_t>::max();
    for (std::size_t m = 0; m < source.module_count(); ++m) {
        const auto shape = source.module(m);
        best = std::min(best, std::min(shape.d_out, shape.d_in));
    }
    return source.module_count() == 0 ? 0 : best;
}

std::vector<rank_sweep_point> rank_sweep(ModuleSource& source, CompressBackend& backend,
                                         const compress_options& options,
                                         const std::vector<std::int64_t>& ranks,
                                         const progress_callback& progress) {
    if (ranks.empty()) throw usage_error("rank sweep", "no ranks to sweep");
    std::vector<rank_sweep_point> points;
    points.reserve(ranks.size());
    for (std::size_t s = 0; s < ranks.size(); ++s) {
        if (ranks[s] < 1) throw usage_error("rank sweep", "rank " + std::to_string(ranks[s]) + " is below 1");
        compress_options step = options;
        step.jd.rank = ranks[s];
        const std::string stage = "rank " + std::to_string(ranks[s]);
        progress_callback inner;
        if (progress)
            inner = [&](const progress_info& info) {
                progress_info outer = info;
                outer.fraction = (double(s) + std::clamp(info.fraction, 0.0, 1.0)) / double(ranks.size());
                outer.stage = stage;
                outer.eta_seconds = -1;
                return progress(outer);
            };
        const auto result = compress_fleet(source, backend, step, inner);
        rank_sweep_point point;
        point.rank = ranks[s];
        double sum = 0;
        std::size_t counted = 0;
        for (double e : result.adapter_error) {
            if (std::isnan(e)) continue;
            sum += e;
            point.max_error = std::max(point.max_error, e);
            ++counted;
        }
        point.mean_error = counted ? sum / double(counted) : 0.0;
        points.push_back(point);
    }
    if (progress) {
        progress_info done;
        done.fraction = 1.0;
        done.stage = "done";
        if (!progress(done)) throw cancelled_error("rank sweep", "cancelled");
    }
    return points;
}

} // namespace lorafleet::compress
