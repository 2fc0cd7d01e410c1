// The compute seam of joint compression (method.md §2-§4, §6): per-module operations at a coarse grain,
// so a GPU backend can upload one module_batch and keep every intermediate on the device. The driver
// (fleet_compressor) owns the fleet-level logic (streaming, clustering, auto-k); a backend owns the
// numerics of one module. All operations take `members` / `adapters` as POSITIONS in batch.adapters.
// Everything is factored: no backend ever forms a d_out x d_in Delta W_i.
//
// Conventions shared by all backends:
//  - JD-Full bases are orthonormal; JD-Diag bases are free (columns unit-norm by our gauge, §4 step 4).
//  - Cores: JD-Full Sigma_i is [r, r]; JD-Diag stores its diagonal sigma_i as [r, 1].
//  - Norms, residuals and errors are ABSOLUTE squared Frobenius values in double; the driver divides by
//    ||Delta W_i||^2. Values are clamped at 0 (rounding can make an exact fit's residual slightly < 0).
//  - A backend instance is used by one thread at a time, except stage() (a look-ahead hint).
#pragma once

#include "engine/compress/dense.hpp"
#include "engine/compress/jd_method.hpp"
#include "engine/compress/module_batch.hpp"
#include "engine/core/error.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace lorafleet::compress {

enum class jd_init { hosvd, random };
// unit: fit with adapter weights w_i = 1 / ||Delta W_i||^2 (a zero adapter gets weight 0), i.e. every
// adapter counts equally; cores are always those of the un-normalized Delta W_i (norms folded back).
enum class normalization { unit, none };
// How the top-r eigenvectors of M = X X^T (X = [T_1 L_1 | ... | T_n L_n], d x m) are computed:
//  exact_small_gram: eig of X^T X (m x m), U = orth(X W)         ~ d m^2 + 4 m^3 flops
//  exact_large_gram: eig of X X^T (d x d) formed in chunks       ~ d^2 m + 4 d^3 flops
//  subspace:         block Krylov (warm start, Rayleigh-Ritz on [U, M U]) ~ 4 d (sum r_i) r per step
//  automatic:        the cheapest by that flop model (subspace counted twice: it is inexact per sweep)
enum class eigen_strategy { automatic, exact_small_gram, exact_large_gram, subspace };

const char* to_string(eigen_strategy s);

struct jd_options {
    jd_method method = jd_method::full;
    std::int64_t rank = 16; // r; must be <= min(d_out, d_in) of every module (else shape_mismatch)
    normalization norm = normalization::unit;
    jd_init init = jd_init::hosvd;
    std::uint64_t seed = 0x10aaf1ee7ull; // random init and rank-deficient fill directions
    // JD-Full (HOOI): stop when the larger of the U / V subspace changes ||U - U_old U_old^T U||_F / ||U||_F
    // is below `tol`, or when F gained less than `objective_tol` (relative) in a sweep, or after
    // `max_sweeps` sweeps.
    int max_sweeps = 30;
    double tol = 1e-4;
    double objective_tol = 1e-7;
    // JD-Diag (ALS, initialized from a JD-Full fit with the options above): stop when a sweep improves
    // the objective by less than `diag_tol` relative, or after `diag_max_sweeps` sweeps.
    int diag_max_sweeps = 100;
    double diag_tol = 1e-6;
    eigen_strategy eigen = eigen_strategy::automatic;
    int subspace_iterations = 2; // Krylov steps per half-sweep in subspace mode (HOSVD init uses 3x)
};

// One module's shared basis for a cluster.
struct jd_basis {
    jd_method method = jd_method::full;
    matrix u; // [d_out, r]
    matrix v; // [d_in, r]

    std::int64_t rank() const { return u.cols; }
    bool empty() const { return u.empty(); }
};

// The result of fitting one module for one set of members.
struct jd_fit {
    jd_basis basis;
    std::vector<std::size_t> members; // batch positions, the order of `cores`
    std::vector<matrix> cores;        // per member: [r, r] (full) or [r, 1] (diag)
    // JD-Full: F = sum_i w_i ||U^T dW_i V||^2 after the init, then after each sweep (non-decreasing).
    // JD-Diag: sum_i w_i ||dW_i - U diag(sigma_i) V^T||^2 after the init's sigma-step, then after each
    // sweep (non-increasing). `step_objective` (JD-Diag) has the value after every sigma-, U- and V-step.
    std::vector<double> objective;
    std::vector<double> step_objective;
    double weighted_energy = 0.0; // sum_i w_i ||dW_i||^2 (the number of non-zero members for `unit`)
    int sweeps = 0;               // sweeps run by this method (JD-Diag: ALS sweeps, not counting its init)
    bool converged = false;       // a tolerance was met before the sweep limit
    eigen_strategy eigen_used = eigen_strategy::automatic; // what `automatic` resolved to (U side)
};

class CompressBackend {
public:
    virtual ~CompressBackend() = default;

    virtual std::string name() const = 0;

    // ||Delta W_i||^2 = tr((B_i^T B_i)(A_i A_i^T)) per batch position.
    virtual std::vector<double> norms2(const module_batch& batch) = 0;

    // JD-Full (§3) on `members` (non-empty). Cores are U^T Delta W_i V. `warm` (may be null or empty):
    // start from this basis instead of options.init (orthonormalized first); the clustering passes use
    // the previous pass's basis of the same cluster, which usually converges in a few sweeps.
    virtual jd_fit fit_jd_full(const module_batch& batch, std::span<const std::size_t> members,
                               const jd_options& options, const jd_basis* warm) = 0;
    // JD-Diag (§4) on `members`, initialized from fit_jd_full with the same options, or from `warm`.
    virtual jd_fit fit_jd_diag(const module_batch& batch, std::span<const std::size_t> members,
                               const jd_options& options, const jd_basis* warm) = 0;
    jd_fit fit_jd_full(const module_batch& batch, std::span<const std::size_t> members,
                       const jd_options& options) {
        return fit_jd_full(batch, members, options, nullptr);
    }
    jd_fit fit_jd_diag(const module_batch& batch, std::span<const std::size_t> members,
                       const jd_options& options) {
        return fit_jd_diag(batch, members, options, nullptr);
    }

    // Optimal cores of `members` for a fixed basis (§6): U^T dW V (full) or G^-1 diag(U^T dW V) (diag).
    virtual std::vector<matrix> project(const module_batch& batch, const jd_basis& basis,
                                        std::span<const std::size_t> members) = 0;

    // [adapters.size(), bases.size()]: squared residual of each adapter under each basis with that basis'
    // optimal core: ||dW||^2 - ||U^T dW V||^2 (full), ||dW||^2 - sigma^T b (diag). A null or empty basis
    // captures nothing (residual = ||dW||^2).
    virtual dmatrix residuals(const module_batch& batch, std::span<const jd_basis* const> bases,
                              std::span<const std::size_t> adapters) = 0;

    // Exact ||dW_i - U Sigma_i V^T||^2 of `members` with the given cores (any U, V: orthonormal or not),
    // by the factored formula of §2 in double.
    virtual std::vector<double> errors(const module_batch& batch, const jd_basis& basis,
                                       std::span<const std::size_t> members,
                                       std::span<const matrix> cores) = 0;

    // Look-ahead hint, callable from ANOTHER thread while the other calls run (the fleet driver calls it
    // from the module prefetch thread): `batch` is probably the next module. A device backend starts
    // uploading it so that the copy overlaps the current module's compute. `batch` need only stay alive
    // until stage() returns; never throws (a failed hint is dropped). Default: nothing.
    virtual void stage(const module_batch& batch) noexcept { (void)batch; }

    // Dispatches on options.method.
    jd_fit fit(const module_batch& batch, std::span<const std::size_t> members, const jd_options& options,
               const jd_basis* warm = nullptr) {
        return options.method == jd_method::full ? fit_jd_full(batch, members, options, warm)
                                                 : fit_jd_diag(batch, members, options, warm);
    }

    // Fits every cluster of one module in one call: clusters[c] are batch positions (non-empty), warm[c]
    // may be null/empty (`warm` itself may be empty: no warm starts, else one entry per cluster); result[c]
    // is what fit(batch, clusters[c], options, warm[c]) returns. A backend may run them together (batched
    // products, batched eigen-solves); the results must equal the one-by-one path's up to the documented
    // fp tolerance (identical on the host backend with 1 thread). Default: the one-by-one loop.
    virtual std::vector<jd_fit> fit_clusters(const module_batch& batch,
                                             std::span<const std::vector<std::size_t>> clusters,
                                             const jd_options& options,
                                             std::span<const jd_basis* const> warm) {
        check_fit_clusters(batch, clusters, warm);
        std::vector<jd_fit> out;
        out.reserve(clusters.size());
        for (std::size_t c = 0; c < clusters.size(); ++c)
            out.push_back(fit(batch, clusters[c], options, warm.empty() ? nullptr : warm[c]));
        return out;
    }

protected:
    // fit_clusters' argument checks (usage_error): every cluster non-empty, `warm` empty or one per cluster.
    static void check_fit_clusters(const module_batch& batch,
                                   std::span<const std::vector<std::size_t>> clusters,
                                   std::span<const jd_basis* const> warm) {
        if (!warm.empty() && warm.size() != clusters.size())
            throw usage_error("fit_clusters", std::to_string(warm.size()) + " warm starts for " +
                                                  std::to_string(clusters.size()) + " clusters of " +
                                                  batch.name);
        for (std::size_t c = 0; c < clusters.size(); ++c)
            if (clusters[c].empty())
                throw usage_error("fit_clusters",
                                  "cluster " + std::to_string(c) + " of " + batch.name + " has no members");
    }
};

// 0, 1, ..., batch.size() - 1.
std::vector<std::size_t> all_positions(const module_batch& batch);

} // namespace lorafleet::compress
