// The CPU implementation of CompressBackend: OpenBLAS for every product, adapters processed in
// parallel on a fixed worker pool (per-adapter GEMMs are small, so one BLAS thread per worker beats
// one multi-threaded GEMM at a time); large single operations (Gram matrices, eigensolvers) run with
// OpenBLAS's own threads set to the same count. Deterministic for a fixed thread count.
#pragma once

#include "engine/compress/compress_backend.hpp"
#include "engine/compress/parallel.hpp"

namespace lorafleet::compress {

struct cpu_backend_options {
    int threads = 0; // 0 = all hardware threads
};

class CpuBackend final : public CompressBackend {
public:
    explicit CpuBackend(cpu_backend_options options = {});

    std::string name() const override { return "cpu"; }
    int threads() const { return m_pool.size(); }

    std::vector<double> norms2(const module_batch& batch) override;
    using CompressBackend::fit_jd_diag;
    using CompressBackend::fit_jd_full;
    jd_fit fit_jd_full(const module_batch& batch, std::span<const std::size_t> members,
                       const jd_options& options, const jd_basis* warm) override;
    jd_fit fit_jd_diag(const module_batch& batch, std::span<const std::size_t> members,
                       const jd_options& options, const jd_basis* warm) override;
    std::vector<matrix> project(const module_batch& batch, const jd_basis& basis,
                                std::span<const std::size_t> members) override;
    dmatrix residuals(const module_batch& batch, std::span<const jd_basis* const> bases,
                      std::span<const std::size_t> adapters) override;
    std::vector<double> errors(const module_batch& batch, const jd_basis& basis,
                               std::span<const std::size_t> members, std::span<const matrix> cores) override;

private:
    thread_pool m_pool;
};

} // namespace lorafleet::compress
