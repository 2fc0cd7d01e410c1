// What a compression will cost, before it starts (the console's Compress panel shows it):
//   - the bank's size, exact from the fleet's module shapes: per module, every cluster with a member
//     holding the module stores U [d_out, r] and V^T [r, d_in], every adapter a core (r x r for
//     JD-Full, r for JD-Diag), all at 2 bytes (F16) — compressed_bank::stored_parameters() * 2. Exact for a
//     fixed cluster count when every adapter has every module (else an upper bound); a range over
//     k = 1 .. max_clusters for an automatic count;
//   - peak memory, a model from the same shapes: the result (bases and cores, float32) held twice while
//     the bank is built from it, two module batches (the one being fitted and the prefetched next one,
//     float32 factors) and the fit's Gram workspace of the largest module (double);
//   - time, from a measured speed of this machine: `machine_speed` is how many work units per second a
//     one-pass JD fit achieves (measure_machine_speed times one on a small in-memory fleet); one pass over
//     the fleet is sum over modules of adapters_m x (d_out + d_in) x max(r, r_source) x r units, and the
//     run takes between min_passes and max_passes passes (1 for k = 1; a feature pass plus up to
//     max_cluster_iterations alternation passes for k > 1; that per tried k for an automatic count).
// Pure functions over shapes (no weights are read), any thread; measure_machine_speed computes.
#pragma once

#include "engine/compress/compress_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::analysis {

// One module of the fleet: its shape, how many adapters have it and their largest rank there.
struct module_usage {
    std::string path;
    std::int64_t d_out = 0;
    std::int64_t d_in = 0;
    std::size_t adapters = 0;
    int max_source_rank = 0;
};

struct fleet_shape {
    std::size_t adapters = 0;
    int max_source_rank = 0; // over every adapter and module
    std::vector<module_usage> modules;
    bool complete = true; // every adapter has every module
};

fleet_shape shape_of(const io::fleet& fleet);

struct compress_estimate {
    std::uint64_t bank_bytes_min = 0; // F16 bases + cores (equal to max for a fixed cluster count)
    std::uint64_t bank_bytes_max = 0;
    bool bank_bytes_exact = false; // fixed count and a complete fleet: min == max == the bank's size
    std::uint64_t peak_bytes = 0;  // the memory model above, at the largest cluster count
    double work_units_per_pass = 0;
    int min_passes = 1;
    int max_passes = 1;
    double seconds_min = -1; // < 0 when no machine speed is known
    double seconds_max = -1;
    // The rank is at or above the adapters' own rank: a rank-r bank of rank-r adapters is near-lossless
    // per adapter but no smaller (rank_at_least_source), or above the source rank, where nothing more can
    // be captured (rank_above_source).
    bool rank_at_least_source = false;
    bool rank_above_source = false;
};

// `machine_speed`: work units per second (<= 0: unknown, no time estimate).
compress_estimate estimate_compression(const fleet_shape& fleet, const compress::compress_options& options,
                                       double machine_speed);

// Work units per second of `backend` on a small seeded in-memory fleet (32 adapters, 4 modules of
// 256 x 256, rank 16 in a shared subspace plus 5% noise, compressed at rank 16 with k = 1): a fraction of
// a second on a laptop core.
double measure_machine_speed(compress::CompressBackend& backend);

} // namespace lorafleet::analysis
