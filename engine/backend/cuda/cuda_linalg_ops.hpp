// LinalgOps on a CUDA device through kernels/linalg_device.hpp (cuBLAS / cuSOLVER, fp32 products; the
// eigen paths' Grams and eigensolvers in fp64, like HostLinalgOps). The module's
// factors are uploaded once per batch (pinned, chunked) and stay resident: T_v = [A_1^T ...] is the
// concatenated lora_A data as is, T_u = [B_1 ...] is gathered on the device from the concatenated
// row-major lora_B. A working set that is a subset of the batch is gathered device-to-device. Only thin
// [d, c] / [R, c] matrices cross PCIe per call. Per-member products run as strided-batched GEMMs over
// runs of consecutive members with equal shapes (one call per run; one run for a uniform-rank fleet).
// Residency: the selected module is checked by the batch's name, shape, span pointers and a few sampled
// values (a source must not hand out different data at the same addresses under the same module name).
// Modules selected before stay on the device across passes in an LRU cache (resident_modules.hpp; 60% of
// the budget) keyed WITHOUT pointers (name, shapes, ranks, a hash of every factor value), so a module
// source that re-reads a module each pass finds it resident; when the budget runs out the least recently
// used ones are freed and those modules are uploaded again on their next use (streaming). A module larger
// than the cache's budget even in 16 bits (in fp32 with compaction off) is never cached and is hashed not
// at all; one that is not exact in 16 bits and larger in fp32 is hashed, then streamed.
// The selected module's factors are fp32 on the device; a cached module whose every factor value is
// exactly representable in bf16 (else fp16) — factors read from bf16 / fp16 PEFT files are — is stored
// narrowed to 16 bits (half the bytes, so about twice as many modules stay resident under the same
// budget) and widened back to fp32 when selected again: lossless both ways, so the results do not change.
// Modules with any other value stay fp32 in the cache (no lossy rounding). set_resident_compact(false), or
// LORAFLEET_RESIDENT_COMPACT=0 in the environment when the ops are created, keeps every cached module in
// fp32. Device errors (including an exhausted --gpu-memory-mb budget) surface as
// backend::device_error("cuda",
// ...) (a backend_unavailable) with the CUDA / cuBLAS / cuSOLVER code and message. Thread affinity: one
// thread at a time, except stage(), which may run on another thread beside the other calls.
#pragma once

#include "engine/compress/linalg_ops.hpp"

#include <cstddef>
#include <memory>

namespace lorafleet::kernels {
class linalg_context;
class device_buffer;
} // namespace lorafleet::kernels

namespace lorafleet::compress {

class CudaLinalgOps final : public LinalgOps {
public:
    // budget_bytes = 0: 90% of the device's free memory. Throws backend_unavailable when the device or
    // the library handles cannot be set up (or the build has no CUDA).
    explicit CudaLinalgOps(std::size_t budget_bytes = 0, int device = 0);
    ~CudaLinalgOps() override;

    std::string name() const override { return "cuda-ops"; }
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

    // Look-ahead (see LinalgOps::stage): uploads the batch on a second stream with its own pinned
    // buffers, from the calling thread, while this object's stream computes; a later select() of the same
    // batch (same residency key) makes the compute stream wait for that upload instead of uploading.
    // One module is staged at a time (a call while one is staged or being staged is dropped). The staged
    // copy is freed when the budget is needed for the ops' own buffers.
    void stage(const module_batch& batch) noexcept override;

    std::size_t budget_bytes() const;
    std::size_t used_bytes() const;
    // How many select() calls found their module already staged (tests, logs).
    std::size_t stage_hits() const;
    // The resident cache's counters: hits / misses of select() looking a module up (a module larger than
    // the cache's budget is not looked up), LRU evictions (budget or memory pressure), the cached modules
    // (not counting the selected one) and their device bytes; of those, the modules stored in 16 bits
    // (compact_modules) and the bytes that saves against fp32 (compact_saved_bytes); how many times a
    // module was narrowed into the cache so far (compactions).
    struct resident_stats {
        std::size_t hits = 0, misses = 0, evictions = 0, modules = 0, bytes = 0, budget = 0;
        std::size_t compact_modules = 0, compact_saved_bytes = 0, compactions = 0;
    };
    resident_stats resident_counters() const;
    // The resident cache's byte budget (default 60% of budget_bytes(); 0: every module is streamed);
    // cached modules beyond it are freed now.
    void set_resident_budget(std::size_t bytes);
    // Whether cached modules whose values are exact in 16 bits are stored narrowed (default true, or
    // false when LORAFLEET_RESIDENT_COMPACT=0 was set when the ops were created). Applies to modules
    // cached from now on.
    void set_resident_compact(bool on);
    bool resident_compact() const;

    struct state;

private:
    std::unique_ptr<state> m;

    // ---- Batched: all clusters of a module at once (issue 15 item 2). Defined in
    // cuda_linalg_ops_batched.cpp, except working_set_view() (cuda_linalg_ops.cpp). ----
public:
    // select_groups() makes the batch resident and gathers the groups' columns into a group-ordered copy
    // of T_u and T_v (group g contiguous); the grouped operations then run every active group's product
    // in one grouped GEMM (kernels/linalg_batched.hpp) with one upload and one download, and
    // top_small_gram_groups solves all eigenproblems in one batched fp64 syev (padded to a common size).
    // top_large_gram_groups and block_grams_exact_groups keep LinalgOps' loops.
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
    std::vector<matrix> top_small_gram_groups(ops_side s, std::span<const std::size_t> active,
                                              std::span<const std::vector<matrix>> factors,
                                              std::span<const std::int64_t> k) override;
    // All matrices uploaded in one copy and factored by ONE kernel launch (kernels::qr_thin_many: one
    // thread block per matrix, LAPACK's Householder dgeqr2 + dorg2r in double, rounded to fp32; LAPACK's
    // R diagonal signs, so qr()'s up to fp32 rounding), one wait, Q and R downloaded in one copy each.
    // NaN / Inf input throws (as the CPU's qr() does).
    std::vector<std::pair<matrix, matrix>> qr_many(std::vector<matrix> a) override;
    // What the grouped operations enqueued since construction: calls, device launches (kernels and
    // library calls) and host <-> device copies.
    struct batched_stats {
        std::size_t calls = 0;
        std::size_t launches = 0;
        std::size_t transfers = 0;
    };
    batched_stats batched_counters() const;
    struct batched_state;
    struct batched_state_deleter {
        void operator()(batched_state* p) const noexcept;
    };

private:
    // The context and the selected working set's device T_u / T_v (cuda_linalg_ops.cpp).
    struct working_view {
        kernels::linalg_context* ctx = nullptr;
        const float* u = nullptr;
        const float* v = nullptr;
    };
    working_view working_set_view();
    // Grows `b` to `bytes`; on an exhausted budget frees resident cached modules (least recently used
    // first), then the staged one, before giving up (cuda_linalg_ops.cpp).
    void reserve_evicting(kernels::device_buffer& b, std::size_t bytes);
    friend struct batched_access;
    std::unique_ptr<batched_state, batched_state_deleter> mb; // after m: destroyed before the context
    // ---- end batched ----
};

} // namespace lorafleet::compress
