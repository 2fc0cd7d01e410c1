// CompressBackend written once against LinalgOps (linalg_ops.hpp): JD-Full (HOOI with the three eigen
// strategies of compress_backend.hpp), JD-Diag (ALS), projection, residuals and exact errors. This is
// the one implementation of the algorithm in the product: over HostLinalgOps it is the CPU backend
// (cpu_backend.hpp), over CudaLinalgOps the CUDA backend (engine/backend/cuda/). The heavy products
// (over d and the fleet) go through the ops; r x r algebra (objectives, cores, Cholesky solves,
// Rayleigh-Ritz) runs on the calling thread in double. The tests compare it with an independent
// reference implementation (tests/support/jd_reference.hpp).
// Details:
//  - the HOSVD init factors L_i come from a Cholesky factor of the r_i x r_i Gram (same L L^T as a QR
//    of the d x r_i factor, without a per-adapter d-sized QR);
//  - norms and errors use the ops' *_exact products: with HostLinalgOps they are double, so an exact
//    fit's error is ~1e-12 ||dW||^2; a device's fp32 products give ~1e-6.
//  - seeded: the same options and inputs give the same result for a fixed LinalgOps (and thread count).
// Thread affinity: one thread at a time (the ops' working set is state), except stage().
#pragma once

#include "engine/compress/compress_backend.hpp"
#include "engine/compress/linalg_ops.hpp"
#include "engine/compress/random_matrix.hpp"

#include <memory>

namespace lorafleet::compress {

class OpsBackend : public CompressBackend {
public:
    OpsBackend(std::string name, std::unique_ptr<LinalgOps> ops);

    std::string name() const override { return m_name; }
    LinalgOps& ops() { return *m_ops; }
    const LinalgOps& const_ops() const { return *m_ops; }

    std::vector<double> norms2(const module_batch& batch) override;
    void stage(const module_batch& batch) noexcept override { m_ops->stage(batch); }
    using CompressBackend::fit_jd_diag;
    using CompressBackend::fit_jd_full;
    jd_fit fit_jd_full(const module_batch& batch, std::span<const std::size_t> members,
                       const jd_options& options, const jd_basis* warm) override;
    jd_fit fit_jd_diag(const module_batch& batch, std::span<const std::size_t> members,
                       const jd_options& options, const jd_basis* warm) override;
    // All clusters in lock-step (two or more; one cluster is fit() itself): each HOOI / ALS step's
    // products for every cluster still sweeping go through ONE grouped LinalgOps call (select_groups), the
    // small eigen-solves and r x r algebra per cluster on this thread in double; a cluster that met a
    // tolerance stops exactly where fit() stops. Every cluster's arithmetic is fit()'s: over HostLinalgOps
    // the result is bit-identical to fit() on a 1-thread HostLinalgOps, for any thread count.
    std::vector<jd_fit> fit_clusters(const module_batch& batch,
                                     std::span<const std::vector<std::size_t>> clusters,
                                     const jd_options& options,
                                     std::span<const jd_basis* const> warm) override;
    std::vector<matrix> project(const module_batch& batch, const jd_basis& basis,
                                std::span<const std::size_t> members) override;
    dmatrix residuals(const module_batch& batch, std::span<const jd_basis* const> bases,
                      std::span<const std::size_t> adapters) override;
    std::vector<double> errors(const module_batch& batch, const jd_basis& basis,
                               std::span<const std::size_t> members, std::span<const matrix> cores) override;

private:
    // ||dW_k||^2 of the current working set `members` (from batch.norms2 when cached, else from the
    // block Grams: tr((B^T B)(A A^T))).
    std::vector<double> working_norms2(const module_batch& batch, std::span<const std::size_t> members);

    std::string m_name;
    std::unique_ptr<LinalgOps> m_ops;
};

} // namespace lorafleet::compress
