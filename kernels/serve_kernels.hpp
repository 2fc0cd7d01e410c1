// Launchers of the serving kernels (FlashInfer / Punica style): device pointers, sizes and a stream in
// (a cudaStream_t passed as void*, nullptr = the default stream), a serve_status out; they enqueue and
// return without waiting, allocate nothing, and know nothing of the engine. Each kernel is a thin
// wrapper over the host/device functions of rmsnorm_row.hpp, rope_rotate.hpp, swiglu.hpp,
// paged_attention.hpp, adapter_rows.hpp and sampling_row.hpp, which the kernels_host tests check
// against the CPU engine. Row-major; activations, residuals, logits and every sum are float32; what the
// device STORES (weight matrices, the KV cache, the bank's bases, raw LoRA factors, and the copies of
// activations fed to tensor-core GEMMs) is in a device_precision (half_elements.hpp: bf16, fp16 or fp32),
// passed next to each `void*` such tensor. Shapes are given per launcher. In a build without CUDA the
// same symbols link (serve_not_compiled.cpp) and return "not compiled". Every launcher adds its kernel
// launches to serve_launch_count() (the decode step's launch statistics). The kernels' grids depend only
// on the sizes passed, never on device data, so a step can be captured in a CUDA graph and replayed with
// new device-side metadata. Thread affinity: none (stream ordering is the caller's business).
#pragma once

#include "kernels/bank_tiles.hpp"
#include "kernels/half_elements.hpp"
#include "kernels/paged_attention.hpp"
#include "kernels/sampling_row.hpp"
#include "kernels/serve_status.hpp"

#include <cstddef>
#include <cstdint>

namespace lorafleet::kernels {

// Largest head_dim the attention kernel supports (a warp's lanes hold attention_lane_dims dims each).
constexpr int serve_max_head_dim = attention_lanes * attention_lane_dims;

// Kernel launches (and cuBLAS calls, counted by their callers through count_serve_launches) made by this
// process so far; relaxed atomic, any thread.
unsigned long long serve_launch_count();
void count_serve_launches(int launches);

// x[t, :] = table[tokens[t], :]: table [vocab, d] stored in precision p, tokens [n], x [n, d] float.
serve_status launch_embed(const void* table, device_precision p, const int* tokens, float* x, int n, int d,
                          void* stream);

// out[r, :] = rms_norm(x[row_index ? row_index[r] : r, :]) * weight: x [*, d], weight [d], out [rows, d];
// when out_half is not null the same values are also stored there in precision p (the GEMM's input).
serve_status launch_rms_norm(const float* x, const int* row_index, const float* weight, float* out,
                             void* out_half, device_precision p, int rows, int d, float eps, void* stream);

// Rotates every head of x [n, heads * head_dim] in place by its token's position [n]; inv_freq
// [head_dim / 2] (rope_inv_freq).
serve_status launch_rope(float* x, const int* positions, const float* inv_freq, int n, int heads,
                         int head_dim, void* stream);

// Writes this step's keys and values k, v [n, kv_heads * head_dim] (float) into one layer's paged pools
// keys, values [blocks, kv_heads, block_size, head_dim] stored in precision p, at each token's position:
// token t's block table starts at tables[table_offset[t]].
serve_status launch_kv_write(const float* k, const float* v, const int* positions, const int* tables,
                             const int* table_offset, int n, paged_kv_layout layout, void* keys, void* values,
                             device_precision p, void* stream);

// Causal decode attention of every token and query head: q, out [n, heads * head_dim] float; token t
// attends to positions 0..positions[t] of its sequence through its block table (as in launch_kv_write);
// pools in precision p, math in float. out_half (may be null): the output also stored in precision p.
serve_status launch_decode_attention(const float* q, const void* keys, const void* values, device_precision p,
                                     const int* tables, const int* table_offset, const int* positions, int n,
                                     int heads, paged_kv_layout layout, float* out, void* out_half,
                                     void* stream);

// out[i] = silu(gate[i]) * up[i] for i < count (out may alias gate); out_half (may be null) gets the
// same values in precision p.
serve_status launch_swiglu(const float* gate, const float* up, float* out, void* out_half, device_precision p,
                           std::size_t count, void* stream);

// x[i] += y[i] for i < count.
serve_status launch_add(float* x, const float* y, std::size_t count, void* stream);

// y[r, :] += bias for r < rows: y [rows, cols], bias [cols].
serve_status launch_add_bias(float* y, const float* bias, int rows, int cols, void* stream);

// ---- Compressed bank (method.md §7), one module: tiled segmented products (bank_tiles.hpp) ----
// The step's adapted tokens j < m, ordered by cluster (segments of one basis): row[j] is the token's row
// in x / y, cluster[j] its cluster, slot[j] its adapter's core index; tiles [tile_count] cut them into
// runs of at most bank_tile_tokens tokens of one cluster (plan_bank_tiles).
//   vt    [clusters, r, d_in]   V_cᵀ (zeros where a cluster has no basis)
//   u     [clusters, d_out, r]  U_c
//   cores [slots, r * r] (full) or [slots, r] (diagonal); zeros where an adapter lacks the module
//   z     [bank_max_splits, m, r] workspace (the shrink's per-split partials)
// Adds U_c Σ_i V_cᵀ x to each adapted token's row of y [*, d_out]; other rows are untouched.
// r <= bank_max_rank. The bases are float (vt, u) or, when `precision` is bf16 / fp16, 16-bit elements
// (vt_half, u_half) read into float; cores stay float.
// For a CUDA graph the sizes are capacities: `count` is the stride m of the arrays and of z, `tile_count`
// the grid's tiles; `live` (device [2], may be null) holds the step's real {adapted tokens, tiles}, and
// blocks past live[1] tiles return at once — so one captured launch serves every step up to capacity.
struct bank_module_view {
    const float* vt = nullptr;
    const float* u = nullptr;
    const float* cores = nullptr;
    int d_in = 0;
    int d_out = 0;
    int rank = 0;
    bool full = true;
    device_precision precision = device_precision::fp32;
    const void* vt_half = nullptr; // [clusters, r, d_in] when precision != fp32
    const void* u_half = nullptr;  // [clusters, d_out, r]
};
struct adapted_tokens {
    const int* row = nullptr;
    const int* cluster = nullptr;
    const int* slot = nullptr;
    int count = 0; // m
    const bank_tile* tiles = nullptr;
    int tile_count = 0;
    const int* live = nullptr; // device {count, tiles} of this step, or null: all count / tile_count
};
serve_status launch_bank_apply(const bank_module_view& module, const adapted_tokens& tokens, const float* x,
                               float* y, float* z, void* stream);

// ---- Raw LoRA (BGMV), one module ----
// Per token t < n, desc[t] (device array) gives its adapter's factors on this module, or a = nullptr for
// none: a [rank, d_in], b [d_out, rank] stored in precision p, y += scale · B (A x) in float. t_buf
// [n, max_rank] workspace.
struct lora_factor_desc {
    const void* a = nullptr;
    const void* b = nullptr;
    int rank = 0;
    float scale = 1.0f;
};
serve_status launch_bgmv_apply(const lora_factor_desc* desc, device_precision p, int n, int d_in, int d_out,
                               int max_rank, const float* x, float* y, float* t_buf, void* stream);

// ---- Sampling ----
// out[r] = sample_row(logits[r, 0 .. vocab)) with params[r] and uniform u[r] (all device arrays), row r
// at logits + r * stride (stride >= vocab: a row may be longer than the pickable vocabulary), one block per
// row: greedy rows by a block argmax, sampled rows by the block-parallel pieces of sampling_row.hpp
// (bitonic sort of the candidates when the row needs their order) with scratch ids
// [rows, sampling_sort_size(vocab)] and prob [rows, vocab] (both may be null when every row is greedy).
// out[r] = -1 when a row has no finite logit.
serve_status launch_sample_rows(const float* logits, int rows, int vocab, int stride,
                                const sampling_row_params* params, const double* u, int* ids, double* prob,
                                int* out, void* stream);

// Fills p[0..count) (elements of precision prec) with uniform values in [-scale, scale) from a
// counter-based hash of (seed, index): random weights for benchmarks without a host copy.
serve_status launch_fill_uniform(void* p, device_precision prec, std::size_t count, std::uint64_t seed,
                                 float scale, void* stream);

} // namespace lorafleet::kernels
