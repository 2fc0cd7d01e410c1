// Error versus rank: the same fleet (usually a module sample, module_sample.hpp) compressed at a series
// of ranks with otherwise fixed options, to help pick the rank (the console's Errors tab). Each point is
// one compress_fleet call; the mean is over the adapters that have at least one of the source's modules.
// Any thread (the source and backend are used by one call at a time).
#pragma once

#include "engine/compress/fleet_compressor.hpp"

#include <vector>

namespace lorafleet::compress {

struct rank_sweep_point {
    std::int64_t rank = 0;
    double mean_error = 0.0; // mean over adapters of their mean relative squared error
    double max_error = 0.0;  // max over adapters of the same
};

// 1, 2, 4, ... (powers of two below max_rank) and max_rank itself, plus `extra` (e.g. the current rank)
// when it is in [1, max_rank]; ascending, distinct. Empty when max_rank < 1.
std::vector<std::int64_t> sweep_ranks(std::int64_t max_rank, std::int64_t extra = 0);

// The largest rank the source's modules allow: min over modules of min(d_out, d_in).
std::int64_t max_rank_of(const ModuleSource& source);

// Compresses `source` once per rank (options.jd.rank replaced; ranks above max_rank_of(source) are a
// shape_mismatch from compress_fleet). `progress` sees the whole sweep's fraction, stage "rank r"; it
// returning false cancels (cancelled_error). Points come back in the order of `ranks`.
std::vector<rank_sweep_point> rank_sweep(ModuleSource& source, CompressBackend& backend,
                                         const compress_options& options,
                                         const std::vector<std::int64_t>& ranks,
                                         const progress_callback& progress = {});

} // namespace lorafleet::compress
