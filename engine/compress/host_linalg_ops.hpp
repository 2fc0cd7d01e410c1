// LinalgOps on the host (OpenBLAS / LAPACKE through dense.hpp) over a fixed worker pool: with OpsBackend
// this is the CPU compression backend (cpu_backend.hpp), the same algorithm as the CUDA backend. Reads
// the batch in place (no copies of the factors). Parallel over the members of the working set (each
// member's GEMMs are small: one single-threaded BLAS call per member and worker beats one threaded
// GEMM at a time, see parallel.hpp) or over column blocks of a big Gram; sums over members are per-worker
// partials added in worker order, so results are deterministic for a fixed thread count. The error
// measure's *_exact products are formed in double. Callers pin OpenBLAS to one thread
// (blas_threads_guard; OpsBackend does). Thread affinity: one thread at a time.
#pragma once

#include "engine/compress/linalg_ops.hpp"
#include "engine/compress/parallel.hpp"

#include <memory>
#include <vector>

namespace lorafleet::compress {

class HostLinalgOps final : public LinalgOps {
public:
    // threads: workers including the caller; 0 = all hardware threads.
    explicit HostLinalgOps(int threads = 1);

    std::string name() const override { return "host-ops"; }
    int threads() const { return m_pool->size(); }
    void select(const module_batch& batch, std::span<const std::size_t> members) override;
    matrix project(ops_side s, const matrix& x) override;
    matrix accumulate(ops_side s, const matrix& z) override;
    matrix apply_blocks(ops_side s, const std::vector<matrix>& c, const matrix& q) override;
    std::vector<matrix> block_grams(ops_side s) override;
    matrix top_small_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t k) override;
    matrix top_large_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t r) override;
    dmatrix block_core_norms(const matrix& xu, const matrix& xv, std::span<const std::int64_t> offsets,
                             std::span<const std::int64_t> widths) override;
    std::vector<dmatrix> block_grams_exact(ops_side s) override;
    std::vector<dmatrix> project_exact(ops_side s, const matrix& x) override;
    std::pair<matrix, matrix> qr(matrix a) override;

    // Grouped working set (LinalgOps): one task per active group on the workers (dynamically pulled,
    // largest groups first), each group's products single-threaded on its own 1-thread HostLinalgOps, so
    // a group's result is bit-identical to a 1-thread HostLinalgOps' single operation whatever the thread
    // count (no sums cross groups).
    void select_groups(const module_batch& batch, std::span<const std::vector<std::size_t>> groups) override;
    std::vector<matrix> project_groups(ops_side s, std::span<const std::size_t> active,
                                       std::span<const matrix> x) override;
    std::vector<matrix> accumulate_groups(ops_side s, std::span<const std::size_t> active,
                                          std::span<const matrix> z) override;
    std::vector<matrix> apply_blocks_groups(ops_side s, std::span<const std::size_t> active,
                                            std::span<const std::vector<matrix>> c,
                                            std::span<const matrix> q) override;
    std::vector<std::vector<matrix>> block_grams_groups(ops_side s,
                                                        std::span<const std::size_t> active) override;
    std::vector<std::vector<dmatrix>> block_grams_exact_groups(ops_side s,
                                                               std::span<const std::size_t> active) override;
    std::vector<matrix> top_small_gram_groups(ops_side s, std::span<const std::size_t> active,
                                              std::span<const std::vector<matrix>> factors,
                                              std::span<const std::int64_t> k) override;
    std::vector<matrix> top_large_gram_groups(ops_side s, std::span<const std::size_t> active,
                                              std::span<const std::vector<matrix>> factors,
                                              std::int64_t r) override;
    std::vector<std::pair<matrix, matrix>> qr_many(std::vector<matrix> a) override;

private:
    // select() without re-validating the batch (select_groups validated it once).
    void select_validated(const module_batch& batch, std::span<const std::size_t> members);
    // out[i] = fn(i, ops of active[i]) for every active group, one task per group (see above); `flops`
    // is the whole call's work (below thread_pool::serial_flops it runs inline).
    template <class Out, class Fn>
    std::vector<Out> run_groups(std::span<const std::size_t> active, double flops, const Fn& fn);

    view stored(ops_side s, std::size_t k) const; // B_k^T [r_k, d_out] or A_k^T [d_in, r_k]
    // X columns of members [first, last) into a [d, width] matrix, in parallel.
    matrix build_x(ops_side s, const std::vector<matrix>& factors, std::size_t first, std::size_t last);
    // sum over members of T_k Z_k [d, c] where Z_k = fn(k) (empty: skipped), per-worker partials.
    template <class Fn> matrix sum_members(ops_side s, std::int64_t cols, double flops, const Fn& fn);

    std::unique_ptr<thread_pool> m_pool;
    const module_batch* m_batch = nullptr;
    std::vector<std::size_t> m_members;
    std::vector<std::unique_ptr<HostLinalgOps>> m_group_ops; // one 1-thread ops per group (grown, reused)
};

} // namespace lorafleet::compress
