// Error versus rank for a compressed bank, comparable with the bank itself: the bank's own adapters
// (re-read from their PEFT files), grouped by the bank's OWN cluster assignment, each cluster compressed
// alone (k = 1, the bank's method, normalization, init, seed and tolerances from its manifest,
// bank_options.hpp) on a seeded sample of the bank's modules, at ranks 1, 2, 4, ... up to the adapters'
// rank (and the bank's rank). Keeping the assignment fixed is what makes the point at the bank's rank
// line up with the bank's error: re-clustering a module sample from scratch at every rank (what a plain
// rank_sweep with k > 1 does) can miss the clusters and report errors ~100x the bank's.
// `bank_error_on_sample` is the bank's own mean error over the same adapters and sampled modules, the
// number the sweep's point at the bank's rank reproduces.
// Any thread; the adapters are only read; the backend is used by one call at a time.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/compress/compress_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/rank_sweep.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::analysis {

struct bank_sweep_options {
    std::size_t sample_modules = 6; // modules of the bank sampled (all when the bank has fewer)
    std::uint64_t seed = 0x5eedu;   // of the module sample
    int threads = 1;                // PEFT conversion threads per cluster source
};

struct bank_sweep_result {
    std::vector<compress::rank_sweep_point> points; // ascending rank
    std::vector<std::string> modules;               // the sampled module paths
    std::size_t adapters = 0;                       // bank adapters found in `fleet` and swept
    int clusters = 0;                               // the bank's clusters that had any of them
    double bank_error_on_sample = 0.0;              // the bank's mean error, same adapters and modules
};

// `fleet`: loaded adapters; those named in the bank are swept (matched by name), others ignored.
// Throws usage_error when none of the bank's adapters is in `fleet`, what compress_fleet throws
// (cancelled_error when `progress` returns false), and validation_error for a bad manifest.
bank_sweep_result sweep_bank_ranks(const bank::compressed_bank& bank, const io::fleet& fleet,
                                   compress::CompressBackend& backend, const bank_sweep_options& options = {},
                                   const compress::progress_callback& progress = {});

} // namespace lorafleet::analysis
