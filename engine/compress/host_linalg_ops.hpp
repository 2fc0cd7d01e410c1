// LinalgOps on the host (OpenBLAS / LAPACKE through dense.hpp), single-threaded per call: the reference
// implementation that runs OpsBackend's algorithm on the CPU, so the GPU path's logic is tested on
// machines without a device (tests/engine/compress/test_compress_ops.cpp). Reads the batch in place (no
// copies of the factors). Thread affinity: one thread at a time.
#pragma once

#include "engine/compress/linalg_ops.hpp"

#include <vector>

namespace lorafleet::compress {

class HostLinalgOps final : public LinalgOps {
public:
    std::string name() const override { return "host-ops"; }
    void select(const module_batch& batch, std::span<const std::size_t> members) override;
    matrix project(ops_side s, const matrix& x) override;
    matrix accumulate(ops_side s, const matrix& z) override;
    matrix apply_blocks(ops_side s, const std::vector<matrix>& c, const matrix& q) override;
    std::vector<matrix> block_grams(ops_side s) override;
    matrix top_small_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t k) override;
    matrix top_large_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t r) override;
    dmatrix block_core_norms(const matrix& xu, const matrix& xv, std::span<const std::int64_t> offsets,
                             std::span<const std::int64_t> widths) override;
    std::pair<matrix, matrix> qr(matrix a) override;

private:
    view stored(ops_side s, std::size_t k) const; // B_k^T [r_k, d_out] or A_k^T [d_in, r_k]
    // X columns of members [first, last) into a [d, width] matrix.
    matrix build_x(ops_side s, const std::vector<matrix>& factors, std::size_t first, std::size_t last) const;

    const module_batch* m_batch = nullptr;
    std::vector<std::size_t> m_members;
};

} // namespace lorafleet::compress
