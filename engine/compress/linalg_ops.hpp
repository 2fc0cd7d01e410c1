// The backend-neutral linear algebra that OpsBackend (ops_backend.hpp) writes JD-Full / JD-Diag against:
// the few operations whose cost grows with d_out, d_in or the fleet size, over a WORKING SET of one
// module's adapters. Everything r x r sized stays on the host in the algorithm; what crosses this
// interface is [d, c] or [R, c] with c ~ r, so a device implementation keeps the factors resident and
// moves only thin matrices. Implementations: HostLinalgOps (OpenBLAS/LAPACKE on a worker pool: the CPU
// backend) and CudaLinalgOps (kernels/linalg_device.hpp).
//
// Working set: select(batch, members) makes T_u = [B_1 ... B_n] [d_out, R] and T_v = [A_1^T ... A_n^T]
// [d_in, R] current, member k's columns at layout().offsets[k], R = sum of the members' ranks r_k.
// `batch` must stay alive and unchanged until the next select(). All results are fp32 (fp32 compute),
// except the two *_exact operations that feed the error measure (norms and errors, method.md §2).
// Thread affinity: one thread at a time (like CompressBackend), except stage().
#pragma once

#include "engine/compress/dense.hpp"
#include "engine/compress/module_batch.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace lorafleet::compress {

enum class ops_side { u, v };

struct ops_layout {
    std::int64_t d_out = 0;
    std::int64_t d_in = 0;
    std::vector<std::int64_t> ranks;   // r_k per member
    std::vector<std::int64_t> offsets; // first column of member k in T (prefix sums of ranks)
    std::int64_t total = 0;            // R

    std::int64_t dim(ops_side s) const { return s == ops_side::u ? d_out : d_in; }
    std::size_t size() const { return ranks.size(); }
};

class LinalgOps {
public:
    virtual ~LinalgOps() = default;
    virtual std::string name() const = 0;

    // Makes `members` (batch positions, in this order) the working set; validates positions.
    virtual void select(const module_batch& batch, std::span<const std::size_t> members) = 0;
    // Look-ahead hint, callable from ANOTHER thread while the other calls run: `batch` is probably the
    // next module to be selected, so an implementation may start moving it (to a device) now. `batch`
    // need only stay alive until stage() returns. Never throws: on any error the hint is dropped and
    // select() does the work (and reports the error). Default: nothing.
    virtual void stage(const module_batch& batch) noexcept { (void)batch; }
    const ops_layout& layout() const { return m_layout; }

    // T^T X [R, c] for X [d, c].
    virtual matrix project(ops_side s, const matrix& x) = 0;
    // T Z [d, c] for Z [R, c] (member k's rows at offsets[k]).
    virtual matrix accumulate(ops_side s, const matrix& z) = 0;
    // T blkdiag(C_1 ... C_n) T^T Q [d, c]; C_k [r_k, r_k] or empty (a zero block).
    virtual matrix apply_blocks(ops_side s, const std::vector<matrix>& c, const matrix& q) = 0;
    // T_k^T T_k [r_k, r_k] per member (U side: B_k^T B_k, V side: A_k A_k^T).
    virtual std::vector<matrix> block_grams(ops_side s) = 0;
    // X = [T_1 L_1 | ... | T_n L_n] [d, m] (L_k [r_k, w_k], w_k may be 0), E = top-k eigenvectors of
    // X^T X (descending): returns X E [d, k], k <= m (columns of norm sqrt(lambda_j)).
    virtual matrix top_small_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t k) = 0;
    // The top-r eigenvectors of X X^T [d, d] (descending), X as above, accumulated in column chunks.
    virtual matrix top_large_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t r) = 0;
    // For every member k and column block j (columns [offsets[j], offsets[j] + widths[j]) of both xu
    // [d_out, c] and xv [d_in, c]): ||(T_u,k^T Xu_j)^T (T_v,k^T Xv_j)||_F^2 = ||Xu_j^T dW_k Xv_j||_F^2,
    // as [n, blocks] (the captured energy of JD-Full bases, for residuals()).
    virtual dmatrix block_core_norms(const matrix& xu, const matrix& xv,
                                     std::span<const std::int64_t> offsets,
                                     std::span<const std::int64_t> widths) = 0;
    // The error measure's products (norms2 / errors of OpsBackend, where ||dW||^2 - 2<S, U^T dW V> + ...
    // cancels for a good fit): the same values as block_grams / project, per member. An implementation
    // that can forms them from the fp32 factors with double products and sums (HostLinalgOps: an exact
    // fit's error is then ~1e-12 ||dW||^2); the default widens the fp32 results (~1e-6).
    virtual std::vector<dmatrix> block_grams_exact(ops_side s);
    virtual std::vector<dmatrix> project_exact(ops_side s, const matrix& x); // T_k^T X [r_k, c] per member
    // Thin Householder QR of a [d, c] (d >= c): {Q [d, c], R [c, c]}, LAPACK's sign convention.
    virtual std::pair<matrix, matrix> qr(matrix a) = 0;

    // ---- Grouped working set (all clusters of a module at once, CompressBackend::fit_clusters) ----
    // select_groups(batch, groups) makes every groups[g] (batch positions, non-empty) a working set of its
    // own, group_layout(g), for the *_groups operations: each runs the single-working-set operation of the
    // same name for every group listed in `active` (indices into groups, each at most once) with that
    // group's own inputs, and returns one result per active group in that order: group g multiplies its
    // own columns of T by its own X_g. Inputs are per active group too. A group's result must equal the
    // single operation's on that working set up to fp rounding (HostLinalgOps: bit-identical to a
    // 1-thread HostLinalgOps, whatever its own thread count). The defaults loop over the groups with
    // select() + the single operation (so they leave some group selected as the plain working set);
    // implementations override them to run the groups together (one task per group on the host; grouped
    // GEMMs and batched eigen-solves on a device). `batch` must stay alive until the next select*().
    virtual void select_groups(const module_batch& batch, std::span<const std::vector<std::size_t>> groups);
    std::size_t group_count() const { return m_group_layouts.size(); }
    const ops_layout& group_layout(std::size_t g) const { return m_group_layouts.at(g); }

    virtual std::vector<matrix> project_groups(ops_side s, std::span<const std::size_t> active,
                                               std::span<const matrix> x);
    virtual std::vector<matrix> accumulate_groups(ops_side s, std::span<const std::size_t> active,
                                                  std::span<const matrix> z);
    virtual std::vector<matrix> apply_blocks_groups(ops_side s, std::span<const std::size_t> active,
                                                    std::span<const std::vector<matrix>> c,
                                                    std::span<const matrix> q);
    virtual std::vector<std::vector<matrix>> block_grams_groups(ops_side s,
                                                                std::span<const std::size_t> active);
    virtual std::vector<std::vector<dmatrix>> block_grams_exact_groups(ops_side s,
                                                                       std::span<const std::size_t> active);
    virtual std::vector<matrix> top_small_gram_groups(ops_side s, std::span<const std::size_t> active,
                                                      std::span<const std::vector<matrix>> factors,
                                                      std::span<const std::int64_t> k);
    virtual std::vector<matrix> top_large_gram_groups(ops_side s, std::span<const std::size_t> active,
                                                      std::span<const std::vector<matrix>> factors,
                                                      std::int64_t r);
    // Independent QRs (no working set): qr() of each.
    virtual std::vector<std::pair<matrix, matrix>> qr_many(std::vector<matrix> a);

protected:
    // Fills layout() from the batch (throws shape_mismatch for a position outside it).
    void set_layout(const module_batch& batch, std::span<const std::size_t> members);
    // Fills the group layouts (validates the batch and every position) and remembers batch and groups for
    // the default *_groups loops.
    void set_group_layouts(const module_batch& batch, std::span<const std::vector<std::size_t>> groups);
    // Throws usage_error unless every active index names a group, at most once, and `inputs` matches.
    void check_active(std::span<const std::size_t> active, std::size_t inputs, const char* what) const;
    const module_batch* group_batch() const { return m_group_batch; }
    const std::vector<std::size_t>& group_members(std::size_t g) const { return m_group_members.at(g); }

private:
    ops_layout m_layout;
    const module_batch* m_group_batch = nullptr;
    std::vector<std::vector<std::size_t>> m_group_members;
    std::vector<ops_layout> m_group_layouts;
};

// Splits a stacked [R, c] result into per-member [r_k, c] matrices, and back.
std::vector<matrix> split_rows(const ops_layout& layout, const matrix& stacked);
matrix stack_rows(const ops_layout& layout, const std::vector<matrix>& blocks);

// Column chunk of X for top_large_gram (both implementations use it, so they sum in the same order).
constexpr std::int64_t ops_large_gram_chunk = 1024;

} // namespace lorafleet::compress
