// The compression options a bank was made with, read back from its manifest's "parameters" (written by
// bank::compression_parameters when the bank was compressed): what a later run that must match the bank
// (the error-vs-rank sweep, a recompression with the same settings) starts from. The method and rank
// come from the bank itself; every other field from the parameters.
// Invariant: compression_parameters(o) stored in a bank of o's method and rank reads back as o for every
// field compression_parameters records (method, rank, normalize, init, seed, clusters / automatic,
// target_error, max_sweeps, tol). A field the manifest lacks (an older bank) keeps compress_options'
// default. Pure functions, any thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/compress/fleet_compressor.hpp"

#include <string>

namespace lorafleet::analysis {

struct bank_settings {
    compress::compress_options options; // options.clusters: 0 when the count was chosen automatically
    bool automatic_clusters = false;    // "clusters": "auto" (then options.target_error was the goal)
    std::string device; // the backend that compressed it ("cpu", "cuda:0", ...; "" if unknown)
};

// Throws validation_error (where: "bank manifest") for a parameter of the wrong JSON type or an unknown
// value ("normalize": "cubic"); never echoes more than the field's name and the expected kind.
bank_settings bank_compression_settings(const bank::compressed_bank& bank);

} // namespace lorafleet::analysis
