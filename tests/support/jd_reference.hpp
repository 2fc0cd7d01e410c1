// An INDEPENDENT reference implementation of the JD algorithms for the tests (not linked into the
// product): JD-Full (HOOI with the three eigen strategies), JD-Diag (ALS), projection, residuals and
// exact errors, written directly over dense.hpp products on the factors of one module_batch,
// single-threaded, with every norm and error product in double. It follows the production backend's
// documented semantics (compress_backend.hpp: seeded init, step order, strategy choice, stopping rules)
// but shares none of its code (ops_backend.cpp / linalg_ops / jd_steps), so a test that compares the two
// on the same input checks the production path's products, layout and bookkeeping. Where the two
// differ in exact arithmetic only: the HOSVD init factors here come from a QR of the d x r_i factor
// (production: a Cholesky factor of its r_i x r_i Gram).
// Thread affinity: one thread at a time.
#pragma once

#include "engine/compress/compress_backend.hpp"

namespace lorafleet::test {

class ReferenceBackend final : public compress::CompressBackend {
public:
    std::string name() const override { return "reference"; }

    std::vector<double> norms2(const compress::module_batch& batch) override;
    using CompressBackend::fit_jd_diag;
    using CompressBackend::fit_jd_full;
    compress::jd_fit fit_jd_full(const compress::module_batch& batch, std::span<const std::size_t> members,
                                 const compress::jd_options& options,
                                 const compress::jd_basis* warm) override;
    compress::jd_fit fit_jd_diag(const compress::module_batch& batch, std::span<const std::size_t> members,
                                 const compress::jd_options& options,
                                 const compress::jd_basis* warm) override;
    std::vector<compress::matrix> project(const compress::module_batch& batch,
                                          const compress::jd_basis& basis,
                                          std::span<const std::size_t> members) override;
    compress::dmatrix residuals(const compress::module_batch& batch,
                                std::span<const compress::jd_basis* const> bases,
                                std::span<const std::size_t> adapters) override;
    std::vector<double> errors(const compress::module_batch& batch, const compress::jd_basis& basis,
                               std::span<const std::size_t> members,
                               std::span<const compress::matrix> cores) override;
};

} // namespace lorafleet::test
