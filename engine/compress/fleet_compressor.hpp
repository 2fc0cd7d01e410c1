// The fleet-level driver of "Compress then Serve" (method.md §5, §6): streaming passes over a
// ModuleSource (one module in memory at a time, plus the next one being prefetched unless
// options.prefetch_modules is off), clustering of adapters (one assignment per adapter,
// shared by all its modules), automatic choice of the cluster count, exact per-adapter per-module
// errors, and the incremental addition of an adapter to an existing result. All numerics of a module
// go through a CompressBackend.
//
// Passes over the fleet (each loads every module once, in order):
//   k = 1: one pass (fit + cores + errors).
//   k > 1: a feature pass over <= feature_modules modules (once per call), then alternation
//          passes (fit every cluster, cores + exact errors for the current assignment, residual of every
//          adapter under every cluster's basis, reusing the residuals of bases that barely moved) until
//          the assignment stops changing or improving (after a bounded number of split/merge escapes)
//          or max_cluster_iterations. Every pass fits the assignment it was given, so the result is the
//          best pass seen; a final pass without residuals runs only when that pass's fits stopped at the
//          sweep limit of a moving assignment (moving_max_sweeps).
#pragma once

#include "engine/compress/compress_backend.hpp"
#include "engine/compress/module_source.hpp"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace lorafleet::compress {

struct compress_options {
    jd_options jd;                   // method, rank, normalization, init, seed, tolerances
    int clusters = 1;                // k; 0 = automatic: the smallest k with mean error <= target_error
    double target_error = 0.6;       // automatic k (method.md §2: < 0.6 keeps >= 99% task performance)
    int max_clusters = 64;           // cap of the automatic search (never more than the adapter count)
    int max_cluster_iterations = 15; // alternation passes per k (0: one fit of the initial clustering)
    // Initial clustering (ours; method.md §5 leaves it open): on up to `feature_modules` evenly spaced
    // modules, a two-sided random sketch Y_i = Om_out^T dW_i Om_in [s, s] of every adapter with
    // s = `feature_rank` (one projection of the factors per side, no fit); features per adapter and
    // module are the normalized projectors onto the column and row spaces of Y_i, at most
    // `feature_budget` raw floats per adapter, projected to 256 dimensions (seeded Gaussian); then
    // k-means++ with Lloyd iterations (best of `kmeans_restarts`). The same features drive the splits of
    // the alternation's escapes and the seeds of warm starts.
    int feature_modules = 16;
    std::int64_t feature_rank = 32;
    std::size_t feature_budget = 65536;
    int kmeans_restarts = 10;
    // Streaming passes load module m + 1 on a background thread while module m is fitted
    // (PrefetchingModuleSource): two modules resident instead of one, the same results bit for bit.
    // Off: one module at a time, each loaded when it is needed.
    bool prefetch_modules = true;
    // Stop rule of the alternation (besides max_cluster_iterations): a pass that moves no adapter, or
    // whose objective (sum of the adapters' relative residuals in their own cluster) improves on the best
    // pass by less than `cluster_tol` (relative), or whose reassignment leads back to an assignment
    // already fitted, ends the alternation (after the escapes, see fleet_compressor.cpp).
    double cluster_tol = 1e-4;
    // Residual reuse: the relative residual of an adapter under another cluster's basis moves by at most
    // ||P - P'||_2 + ||Q - Q'||_2 (the spectral distances of the old and new U and V projectors) when that
    // basis moves, so a column (module, cluster) of residuals is recomputed only when the accumulated
    // distance of its basis since the last computation exceeds `residual_drift_tol`; otherwise the cached
    // value is used for the reassignment. An adapter's residual in its own cluster is always its exact
    // error. 0: recompute every column in every pass.
    double residual_drift_tol = 2e-3;
    // Sweep limit of the per-cluster fits while the assignment is still moving (the first pass, and
    // after a reassignment that moved more than 1% of the adapters); the fits are warm-started from the
    // previous pass, so the sweeps add up over passes. A pass after which no adapter moves must have run
    // without this limit (else one more pass runs). 0 (default): no limit. Off by default: on the
    // planted Mistral benchmark a cold fit of a correct cluster converges in one sweep anyway, and on
    // fleets with a weak initial clustering the extra converging passes delayed the escapes.
    int moving_max_sweeps = 0;
};

struct progress_info {
    double fraction = 0.0;   // 0 .. 1, non-decreasing
    std::string stage;       // "features", "cluster k=4 iteration 2", "final", ...
    std::string module;      // module being processed
    double eta_seconds = -1; // estimate (< 0 = unknown)
};
// Return false to cancel: the driver then throws lorafleet::cancelled_error.
using progress_callback = std::function<bool(const progress_info&)>;

// One pass over the fleet (fit + cores + errors, and the clustering residuals when it alternates).
struct pass_record {
    std::string stage;
    double seconds = 0.0;    // wall time of the pass
    double cpu_s = 0.0;      // process CPU time of the pass (all threads)
    double fit_s = 0.0;      // of which backend fits
    double residual_s = 0.0; // clustering residuals
    double error_s = 0.0;    // exact errors
    double load_s = 0.0;     // waiting for loads
    int fits = 0;            // backend fits (clusters x modules)
    int reused = 0;          // (cluster, module) fits taken over from the last pass (same members, converged)
    int sweeps = 0;          // their sweeps, summed
    int max_sweeps = 0;      // the most sweeps of one fit
    int sweep_limit = 0;     // the sweep limit the pass ran with
    int converged = 0;       // fits that met a tolerance before the limit
    int residual_columns = 0; // (module, cluster) residual columns computed (the rest reused)
    double objective = -1.0;  // sum over adapters of the relative residual in its own cluster (< 0: none)
    int moved = -1;           // adapters the reassignment after this pass moves (< 0: no reassignment)
};

struct compression_timing {
    double total_s = 0.0;
    double load_s = 0.0;     // waiting for ModuleSource::load (a prefetched load's time hides behind compute)
    double fit_s = 0.0;      // backend fits (JD-Full / JD-Diag)
    double residual_s = 0.0; // clustering residuals
    double error_s = 0.0;    // exact errors
    double feature_s = 0.0;  // feature pass and k-means
    int passes = 0;          // full passes over the fleet (the feature pass not counted)
    std::vector<pass_record> pass_log; // every pass, in order (all k of an automatic search)
};

struct compression_result {
    jd_method method = jd_method::full;
    std::int64_t rank = 0;
    int k = 0;
    std::vector<std::string> adapter_names;
    std::vector<module_shape> modules;
    std::vector<int> assignment;              // [adapter] -> cluster in [0, k)
    std::vector<std::vector<jd_basis>> bases; // [cluster][module]; empty when no member has the module
    std::vector<std::vector<matrix>> cores;   // [adapter][module]: [r, r] or [r, 1]; empty when missing
    std::vector<std::vector<double>> errors;  // [adapter][module]: relative squared error, NaN if missing;
                                              // 0 for a zero adapter (||dW|| = 0 is reproduced exactly)
    // Aggregates of the relative squared errors (method.md §2).
    std::vector<double> adapter_error; // [adapter] mean over its modules (NaN for an adapter without any)
    std::vector<double> cluster_error; // [cluster] mean of adapter_error over its members (NaN if empty)
    std::vector<int> cluster_size;     // [cluster]
    std::vector<double> module_error;  // [module] mean over the adapters that have it
    double mean_error = 0.0;           // mean of adapter_error
    double max_error = 0.0;            // max of adapter_error
    double max_module_error = 0.0;     // max over every (adapter, module)
    bool target_met = true;            // automatic k: whether target_error was reached (else k = cap)
    std::vector<std::pair<int, double>> k_trials; // automatic k: (k, mean_error) in search order
    int cluster_iterations = 0;                   // alternation passes of the returned k
    compression_timing timing;
};

// Compresses the fleet. Throws shape_mismatch (rank above a module's min(d_out, d_in), batch shapes that
// disagree with the source), validation_error (an adapter index out of range or repeated), usage_error
// (no adapters or modules), cancelled_error (the callback returned false).
compression_result compress_fleet(ModuleSource& source, CompressBackend& backend,
                                  const compress_options& options, const progress_callback& progress = {});

// §6: a new adapter projected onto every cluster's bases; the cluster with the lowest mean error wins.
struct adapter_projection {
    int cluster = -1;
    std::vector<matrix> cores;                  // [module of the result]; empty where the adapter lacks it
    std::vector<double> errors;                 // [module]: relative squared error, NaN where missing
    double mean_error = 0.0;                    // over the adapter's modules, in the chosen cluster
    std::vector<double> cluster_mean_error;     // [cluster] the same mean under every cluster
    std::vector<std::string> unmatched_modules; // modules of the source that the result does not have
};

// `source` holds the new adapter (index `adapter` in it); its modules are matched to the result's by
// name. A cluster without a basis for one of the adapter's modules counts error 1 there.
adapter_projection add_adapter(const compression_result& result, ModuleSource& source, std::size_t adapter,
                               CompressBackend& backend);

} // namespace lorafleet::compress
