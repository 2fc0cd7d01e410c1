// A batch-invariant matrix product for the forward pass: y = alpha · x·wᵀ (+ y), with x [m, k] and w [n, k]
// row-major (w as checkpoints store linear weights, [d_out, d_in]). Every output element is one dot
// product summed in one fixed order (8 interleaved partial sums over k, a fixed reduction, then the
// tail), whatever m is, wherever the row falls in a tile and whichever thread computes it. So a
// sequence's logits do not depend on what else shares its step: continuous batching gives bitwise the
// same results as running the sequence alone. (BLAS sgemm does not promise that: its kernels for edge
// tiles and for one row sum in other orders.) AVX2+FMA when the CPU has it, portable code otherwise;
// the choice is made once per process, so results are reproducible on one machine.
#pragma once

namespace lorafleet::serve {

class worker_pool;

// y[i, j] = alpha * sum_k x[i, k] * w[j, k]  (+ y[i, j] when accumulate), for i < m, j < n.
// Leading dimensions are in floats. With a pool, blocks of w's rows run on its threads.
void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const float* w, int ldw, float* y,
             int ldy, bool accumulate, worker_pool* pool = nullptr);

// Whether the AVX2+FMA kernel is in use (for logs and benchmarks).
bool gemm_uses_avx2();

} // namespace lorafleet::serve
