// A batch-invariant matrix product for the forward pass: y = alpha · x·wᵀ (+ y), with x [m, k] and w [n, k]
// row-major (w as checkpoints store linear weights, [d_out, d_in]). Every output element is one dot
// product summed in one fixed order (8 interleaved partial sums over k, a fixed reduction, then the
// tail), whatever m is, wherever the row falls in a tile and whichever thread computes it. So a
// sequence's logits do not depend on what else shares its step: continuous batching gives bitwise the
// same results as running the sequence alone. (BLAS sgemm does not promise that: its kernels for edge
// tiles and for one row sum in other orders.) AVX2+FMA when the CPU has it, portable code otherwise;
// the choice is made once per process, so results are reproducible on one machine.
// w may be held as float16 or bfloat16 (the checkpoint's dtype, weight_dtype.hpp): each tile's few rows of w
// are widened to float32 into a per-thread panel first and then go through the same kernels, so the result is
// bit for bit the float32 product over the widened values (and just as batch-invariant).
#pragma once

#include "engine/serve/model/weight_dtype.hpp"

#include <cstddef>
#include <functional>

namespace lorafleet::serve {

class worker_pool;

// Work run inside gemm_nt's parallel loop, so that a product and what must follow it cost one wake-up of
// the pool rather than two (on a decode step the pool's hand-offs, not the arithmetic, dominate small
// loops). First `pre_items` independent items pre(item, worker), which must not touch y; then each block
// of output columns [j0, j1) is computed and, once every pre item has finished, post(j0, j1, worker) runs
// on the same thread and may read and update y's columns [j0, j1) of every row (blocks are disjoint, so
// posts of different blocks run concurrently; when the product runs on one thread, a single post(0, n)
// follows all blocks). `work` (multiply-adds) counts towards going parallel.
struct gemm_fused {
    std::size_t pre_items = 0;
    std::function<void(std::size_t item, int worker)> pre;
    std::function<void(int j0, int j1, int worker)> post;
    double work = 0.0;
};

// y[i, j] = alpha * sum_k x[i, k] * w[j, k]  (+ y[i, j] when accumulate), for i < m, j < n.
// Leading dimensions are in floats. With a pool, blocks of w's rows run on its threads.
void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const float* w, int ldw, float* y,
             int ldy, bool accumulate, worker_pool* pool = nullptr);

// The same product with fused work around it (gemm_fused). Equal, bit for bit, to gemm_nt followed by the
// pre items and then every post in turn.
void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const float* w, int ldw, float* y,
             int ldy, bool accumulate, worker_pool* pool, const gemm_fused& fused);

// The same two products with w stored as `wt` (ldw in elements of w).
void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const void* w, weight_dtype wt,
             int ldw, float* y, int ldy, bool accumulate, worker_pool* pool = nullptr);
void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const void* w, weight_dtype wt,
             int ldw, float* y, int ldy, bool accumulate, worker_pool* pool, const gemm_fused& fused);

// Whether the AVX2+FMA kernel is in use (for logs and benchmarks).
bool gemm_uses_avx2();

} // namespace lorafleet::serve
