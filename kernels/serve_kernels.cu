// CUDA build of the serving launchers (see serve_kernels.hpp). Each kernel maps threads onto the
// host/device row functions; where a row is split over threads (RMSNorm sums, attention positions, dot
// products of the adapter shrinks) the pieces are combined in a fixed order, so results are deterministic
// run to run, and agree with the CPU engine to float rounding. No CUB/Thrust (compile time): reductions are
// warp shuffles and shared memory written here.
#include "kernels/adapter_rows.hpp"
#include "kernels/bank_tiles.hpp"
#include "kernels/rmsnorm_row.hpp"
#include "kernels/rope_rotate.hpp"
#include "kernels/serve_kernels.hpp"
#include "kernels/swiglu.hpp"

#include <cuda_runtime_api.h>

#include <atomic>

namespace lorafleet::kernels {

namespace {

constexpr int threads_per_block = 256;

std::atomic<unsigned long long> launches{0};

// Runs `body` with E the element type of precision p (a generic lambda taking a type tag).
template <class E> struct elem { using type = E; };
template <class F> void with_element(device_precision p, F&& body) {
    switch (p) {
    case device_precision::bf16:
        body(elem<bf16_bits>{});
        break;
    case device_precision::fp16:
        body(elem<fp16_bits>{});
        break;
    default:
        body(elem<float>{});
        break;
    }
}

cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}

serve_status bad_argument(const char* api, const char* message) {
    return {serve_bad_argument_code, api, message};
}

// Status of the launch just made (configuration errors show here; execution errors on a later sync).
serve_status launched(const char* api, int kernels = 1) {
    launches.fetch_add(static_cast<unsigned long long>(kernels), std::memory_order_relaxed);
    const cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) return {};
    return {int(err), api, cudaGetErrorString(err)};
}

unsigned blocks_for(std::size_t count, int per_block = threads_per_block) {
    return unsigned((count + std::size_t(per_block) - 1) / std::size_t(per_block));
}

__device__ float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Dot product of a [n] (elements E) and b [n] by one warp: lane i sums k = i, i + 32, ..., then a butterfly.
template <class E> __device__ float warp_dot(const E* a, const float* b, int n, int lane) {
    float acc = 0.0f;
    for (int k = lane; k < n; k += 32)
        acc += to_float(a[k]) * b[k];
    return warp_sum(acc);
}

// ---- Kernels ------------------------------------------------------------------------------------------
template <class E> __global__ void embed_kernel(const E* table, const int* tokens, float* x, int n, int d) {
    const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= std::size_t(n) * std::size_t(d)) return;
    const std::size_t t = i / std::size_t(d), c = i % std::size_t(d);
    x[i] = to_float(table[std::size_t(tokens[t]) * std::size_t(d) + c]);
}

// One block per output row: strided double partial sums, a shared-memory tree, then the elementwise scale.
template <class E>
__global__ void rms_norm_kernel(const float* x, const int* row_index, const float* weight, float* out,
                                E* out_half, int d, float eps) {
    __shared__ double partial[threads_per_block];
    __shared__ float inv;
    const int r = blockIdx.x;
    const float* xr = x + std::size_t(row_index ? row_index[r] : r) * std::size_t(d);
    partial[threadIdx.x] = rms_norm_partial(xr, d, int(threadIdx.x), int(blockDim.x));
    __syncthreads();
    for (int s = int(blockDim.x) / 2; s > 0; s >>= 1) {
        if (int(threadIdx.x) < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) inv = rms_norm_inv(partial[0], d, eps);
    __syncthreads();
    float* o = out + std::size_t(r) * std::size_t(d);
    E* oh = out_half ? out_half + std::size_t(r) * std::size_t(d) : nullptr;
    for (int i = int(threadIdx.x); i < d; i += int(blockDim.x)) {
        const float v = rms_norm_element(xr[i], weight[i], inv);
        o[i] = v;
        if (oh) oh[i] = store_element<E>(v);
    }
}

// One thread per (token, pair): the angle once, then every head's pair.
__global__ void rope_kernel(float* x, const int* positions, const float* inv_freq, int n, int heads,
                            int head_dim) {
    const int half = head_dim / 2;
    const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= std::size_t(n) * std::size_t(half)) return;
    const int t = int(i / std::size_t(half)), p = int(i % std::size_t(half));
    float c, s;
    rope_angle(positions[t], inv_freq[p], &c, &s);
    for (int h = 0; h < heads; ++h)
        rope_rotate_pair(x + (std::size_t(t) * heads + std::size_t(h)) * std::size_t(head_dim), half, p, c,
                         s);
}

// One thread per (token, kv head, element).
template <class E>
__global__ void kv_write_kernel(const float* k, const float* v, const int* positions, const int* tables,
                                const int* table_offset, int n, paged_kv_layout L, E* keys, E* values) {
    const std::size_t per_token = std::size_t(L.kv_heads) * std::size_t(L.head_dim);
    const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= std::size_t(n) * per_token) return;
    const int t = int(i / per_token);
    const int h = int((i % per_token) / std::size_t(L.head_dim)), e = int(i % std::size_t(L.head_dim));
    const int pos = positions[t];
    const int block = tables[table_offset[t] + pos / L.block_size];
    const std::size_t off = paged_kv_offset(L, block, h, pos % L.block_size) + std::size_t(e);
    kv_store(keys, off, k[i]);
    kv_store(values, off, v[i]);
}

// One warp per (token, query head), lanes splitting the head's dims (paged_attention.hpp): per position a
// butterfly sum of the lanes' shares of q · k (the same value on every lane), then each lane folds it into
// its softmax state and its dims. Accumulators stay in registers; key and value rows load coalesced.
constexpr int attention_warps_per_block = 4;

template <class E>
__global__ void decode_attention_kernel(const float* q, const E* keys, const E* values, const int* tables,
                                        const int* table_offset, const int* positions, int n, int heads,
                                        int group, paged_kv_layout L, float scale, float* out, E* out_half) {
    const int lane = int(threadIdx.x) % attention_lanes;
    const int pair = int(blockIdx.x) * attention_warps_per_block + int(threadIdx.x) / attention_lanes;
    if (pair >= n * heads) return; // the whole warp
    const int t = pair / heads, h = pair % heads, hd = L.head_dim, kv = h / group;
    const float* qh = q + (std::size_t(t) * heads + std::size_t(h)) * std::size_t(hd);
    const int* table = tables + table_offset[t];
    const int context = positions[t] + 1;
    float acc[attention_lane_dims];
    for (int d = 0; d < attention_lane_dims; ++d)
        acc[d] = 0.0f;
    online_softmax_state st{-INFINITY, 0.0f};
    for (int j = 0; j < context; ++j) {
        const std::size_t off = paged_kv_offset(L, table[j / L.block_size], kv, j % L.block_size);
        const float s = warp_sum(attention_lane_dot(qh, keys + off, hd, lane)) * scale;
        attention_lane_push(st, acc, hd, lane, s, values + off);
    }
    const std::size_t at = (std::size_t(t) * heads + std::size_t(h)) * std::size_t(hd);
    attention_lane_store(st, acc, hd, lane, out + at);
    if (out_half) // each lane re-reads only the dims it wrote
        for (int d = 0; d < attention_lane_dims; ++d) {
            const int i = lane + attention_lanes * d;
            if (i < hd) out_half[at + std::size_t(i)] = store_element<E>(out[at + std::size_t(i)]);
        }
}

template <class E>
__global__ void swiglu_kernel(const float* gate, const float* up, float* out, E* out_half,
                              std::size_t count) {
    const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const float v = swiglu_element(gate[i], up[i]);
    out[i] = v;
    if (out_half) out_half[i] = store_element<E>(v);
}

__global__ void add_kernel(float* x, const float* y, std::size_t count) {
    const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < count) x[i] += y[i];
}

__global__ void add_bias_kernel(float* y, const float* bias, int rows, int cols) {
    const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < std::size_t(rows) * std::size_t(cols)) y[i] += bias[i % std::size_t(cols)];
}

// Bank shrink, block (tile, split): x and V_cᵀ chunks staged in shared memory, each thread's (j, p)
// pairs accumulated in registers over the split's chunks (bank_tiles.hpp).
template <class E>
__global__ void bank_shrink_tiled_kernel(bank_module_view M, const E* vt, adapted_tokens T, const float* x,
                                         float* zpart, int splits) {
    if (T.live && int(blockIdx.x) >= T.live[1]) return; // a tile this step does not have (graph capacity)
    extern __shared__ float shared[];
    float* xs = shared;
    float* vs = shared + bank_tile_tokens * bank_shrink_stride;
    const bank_tile tile = T.tiles[blockIdx.x];
    const int split = int(blockIdx.y), tid = int(threadIdx.x), threads = int(blockDim.x);
    int begin = 0, end = 0;
    bank_split_range(M.d_in, splits, split, &begin, &end);
    float acc[bank_pairs_per_thread];
    for (int i = 0; i < bank_pairs_per_thread; ++i)
        acc[i] = 0.0f;
    for (int k0 = begin; k0 < end; k0 += bank_shrink_k) {
        const int klen = end - k0 < bank_shrink_k ? end - k0 : bank_shrink_k;
        bank_shrink_stage(vt, T.row, x, M.d_in, M.rank, tile, k0, klen, xs, vs, tid, threads);
        __syncthreads();
        bank_shrink_accumulate(xs, vs, tile, M.rank, klen, acc, tid, threads);
        __syncthreads();
    }
    bank_shrink_store(acc, tile, M.rank, split, T.count, zpart, tid, threads);
}

// Bank expand, block (tile, column block): the tile's core products into shared memory, then one output
// column per thread for every token of the tile.
template <class E>
__global__ void bank_expand_tiled_kernel(bank_module_view M, const E* u, adapted_tokens T, const float* zpart,
                                         int splits, float* y) {
    if (T.live && int(blockIdx.x) >= T.live[1]) return;
    __shared__ float ws[bank_tile_tokens * bank_max_rank];
    const bank_tile tile = T.tiles[blockIdx.x];
    bank_expand_stage(M.cores, M.full, T.slot, zpart, splits, T.count, tile, M.rank, ws, int(threadIdx.x),
                      int(blockDim.x));
    __syncthreads();
    bank_expand_column(u, T.row, ws, M.d_out, M.rank, tile, int(blockIdx.y * blockDim.x + threadIdx.x), y);
}

// BGMV shrink: one warp per (token, p < max_rank).
template <class E>
__global__ void bgmv_shrink_kernel(const lora_factor_desc* desc, int n, int d_in, int max_rank,
                                   const float* x, float* t_buf) {
    const int warp = int((std::size_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
    if (warp >= n * max_rank) return;
    const int t = warp / max_rank, p = warp % max_rank;
    const lora_factor_desc D = desc[t];
    if (D.a == nullptr || p >= D.rank) return;
    const float s =
        warp_dot(static_cast<const E*>(D.a) + std::size_t(p) * d_in, x + std::size_t(t) * d_in, d_in, lane);
    if (lane == 0) t_buf[std::size_t(t) * max_rank + p] = s;
}

// BGMV expand: one thread per (token, o).
template <class E>
__global__ void bgmv_expand_kernel(const lora_factor_desc* desc, int n, int d_out, int max_rank,
                                   const float* t_buf, float* y) {
    const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= std::size_t(n) * std::size_t(d_out)) return;
    const int t = int(i / std::size_t(d_out)), o = int(i % std::size_t(d_out));
    const lora_factor_desc D = desc[t];
    if (D.a == nullptr) return;
    y[i] += bgmv_expand_element(static_cast<const E*>(D.b), t_buf + std::size_t(t) * max_rank, o, D.rank,
                                D.scale);
}

// One block per row (sampling_row.hpp): greedy rows by a block argmax (lowest id on ties); sampled rows
// by a block count / max, a bitonic sort of the candidates when the row needs their order, the weights in
// parallel, and the draw (a sequential sum in candidate order) in thread 0.
__global__ void sample_rows_kernel(const float* logits, int vocab, int stride,
                                   const sampling_row_params* params, const double* u, int* ids, double* prob,
                                   int* out) {
    __shared__ float best_v[threads_per_block];
    __shared__ int best_i[threads_per_block];
    const int r = blockIdx.x, tid = int(threadIdx.x), threads = int(blockDim.x);
    const float* row = logits + std::size_t(r) * std::size_t(stride);
    const sampling_row_params P = params[r];
    if (!(P.temperature == 0.0f || P.top_k == 1)) {
        // Candidates (count) and their largest logit, in one block reduction.
        int count = 0;
        float mx = -INFINITY;
        for (int i = tid; i < vocab; i += threads)
            if (finite_logit(row[i])) {
                ++count;
                mx = fmaxf(mx, row[i]);
            }
        best_i[tid] = count;
        best_v[tid] = mx;
        __syncthreads();
        for (int s = threads / 2; s > 0; s >>= 1) {
            if (tid < s) {
                best_i[tid] += best_i[tid + s];
                best_v[tid] = fmaxf(best_v[tid], best_v[tid + s]);
            }
            __syncthreads();
        }
        const int keep = best_i[0];
        mx = best_v[0];
        if (keep == 0) {
            if (tid == 0) out[r] = -1;
            return; // every thread: keep is uniform
        }
        const bool cut = P.top_k > 0 && P.top_k < keep;
        const bool order = cut || P.top_p < 1.0f;
        const int slots = order ? sampling_sort_size(vocab) : vocab;
        int* ids_r = ids + std::size_t(r) * std::size_t(sampling_sort_size(vocab));
        double* prob_r = prob + std::size_t(r) * std::size_t(vocab);
        for (int i = tid; i < slots; i += threads)
            ids_r[i] = sampling_slot(row, vocab, i);
        __syncthreads();
        if (order)
            for (int k = 2; k <= slots; k <<= 1)
                for (int j = k >> 1; j > 0; j >>= 1) {
                    for (int i = tid; i < slots; i += threads)
                        sampling_bitonic_step(row, ids_r, k, j, i);
                    __syncthreads();
                }
        const int n = order ? (cut ? P.top_k : keep) : vocab;
        for (int i = tid; i < n; i += threads)
            prob_r[i] = ids_r[i] >= 0 ? sampling_weight(row[ids_r[i]], mx, P.temperature) : 0.0;
        __syncthreads();
        if (tid == 0) out[r] = sample_from_weights(ids_r, prob_r, n, P.top_p, u[r]);
        return;
    }
    int bi = -1;
    float bv = 0.0f;
    for (int i = tid; i < vocab; i += threads) // ascending ids: strict > keeps the lowest
        if (finite_logit(row[i]) && (bi < 0 || row[i] > bv)) {
            bv = row[i];
            bi = i;
        }
    best_v[tid] = bv;
    best_i[tid] = bi;
    __syncthreads();
    for (int s = threads / 2; s > 0; s >>= 1) {
        if (tid < s) {
            const int oi = best_i[tid + s];
            const float ov = best_v[tid + s];
            const int mi = best_i[tid];
            const float mv = best_v[tid];
            if (oi >= 0 && (mi < 0 || ov > mv || (ov == mv && oi < mi))) {
                best_v[tid] = ov;
                best_i[tid] = oi;
            }
        }
        __syncthreads();
    }
    if (tid == 0) out[r] = best_i[0];
}

__device__ std::uint64_t splitmix64(std::uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

template <class E>
__global__ void fill_uniform_kernel(E* p, std::size_t count, std::uint64_t seed, float scale) {
    const std::size_t i = std::size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const double u = double(splitmix64(seed * 0x100000001b3ull + i) >> 11) * 0x1p-53; // [0, 1)
    p[i] = store_element<E>(float((2.0 * u - 1.0) * scale));
}

} // namespace

bool serve_kernels_compiled() {
    return true;
}

unsigned long long serve_launch_count() {
    return launches.load(std::memory_order_relaxed);
}
void count_serve_launches(int n) {
    launches.fetch_add(static_cast<unsigned long long>(n), std::memory_order_relaxed);
}

// ---- Launchers ----------------------------------------------------------------------------------------
serve_status launch_embed(const void* table, device_precision p, const int* tokens, float* x, int n, int d,
                          void* stream) {
    if (n <= 0) return {};
    with_element(p, [&](auto tag) {
        using E = typename decltype(tag)::type;
        embed_kernel<<<blocks_for(std::size_t(n) * d), threads_per_block, 0, as_stream(stream)>>>(
            static_cast<const E*>(table), tokens, x, n, d);
    });
    return launched("launch_embed");
}

serve_status launch_rms_norm(const float* x, const int* row_index, const float* weight, float* out,
                             void* out_half, device_precision p, int rows, int d, float eps, void* stream) {
    if (rows <= 0) return {};
    if (d <= 0) return bad_argument("launch_rms_norm", "d must be positive");
    with_element(p, [&](auto tag) {
        using E = typename decltype(tag)::type;
        rms_norm_kernel<E><<<unsigned(rows), threads_per_block, 0, as_stream(stream)>>>(
            x, row_index, weight, out, static_cast<E*>(out_half), d, eps);
    });
    return launched("launch_rms_norm");
}

serve_status launch_rope(float* x, const int* positions, const float* inv_freq, int n, int heads,
                         int head_dim, void* stream) {
    if (n <= 0) return {};
    if (head_dim % 2 != 0) return bad_argument("launch_rope", "head_dim must be even");
    rope_kernel<<<blocks_for(std::size_t(n) * (head_dim / 2)), threads_per_block, 0, as_stream(stream)>>>(
        x, positions, inv_freq, n, heads, head_dim);
    return launched("launch_rope");
}

serve_status launch_kv_write(const float* k, const float* v, const int* positions, const int* tables,
                             const int* table_offset, int n, paged_kv_layout layout, void* keys, void* values,
                             device_precision p, void* stream) {
    if (n <= 0) return {};
    with_element(p, [&](auto tag) {
        using E = typename decltype(tag)::type;
        kv_write_kernel<<<blocks_for(std::size_t(n) * layout.kv_heads * layout.head_dim), threads_per_block,
                          0, as_stream(stream)>>>(k, v, positions, tables, table_offset, n, layout,
                                                  static_cast<E*>(keys), static_cast<E*>(values));
    });
    return launched("launch_kv_write");
}

serve_status launch_decode_attention(const float* q, const void* keys, const void* values, device_precision p,
                                     const int* tables, const int* table_offset, const int* positions, int n,
                                     int heads, paged_kv_layout layout, float* out, void* out_half,
                                     void* stream) {
    if (n <= 0) return {};
    if (layout.head_dim <= 0 || layout.head_dim > serve_max_head_dim)
        return bad_argument("launch_decode_attention", "head_dim must be in 1..256");
    if (layout.kv_heads <= 0 || heads % layout.kv_heads != 0)
        return bad_argument("launch_decode_attention", "heads must be a multiple of kv_heads");
    const float scale = 1.0f / sqrtf(float(layout.head_dim));
    const std::size_t pairs = std::size_t(n) * std::size_t(heads);
    with_element(p, [&](auto tag) {
        using E = typename decltype(tag)::type;
        decode_attention_kernel<E>
            <<<unsigned((pairs + attention_warps_per_block - 1) / attention_warps_per_block),
               attention_warps_per_block * attention_lanes, 0, as_stream(stream)>>>(
                q, static_cast<const E*>(keys), static_cast<const E*>(values), tables, table_offset,
                positions, n, heads, heads / layout.kv_heads, layout, scale, out, static_cast<E*>(out_half));
    });
    return launched("launch_decode_attention");
}

serve_status launch_swiglu(const float* gate, const float* up, float* out, void* out_half, device_precision p,
                           std::size_t count, void* stream) {
    if (count == 0) return {};
    with_element(p, [&](auto tag) {
        using E = typename decltype(tag)::type;
        swiglu_kernel<E><<<blocks_for(count), threads_per_block, 0, as_stream(stream)>>>(
            gate, up, out, static_cast<E*>(out_half), count);
    });
    return launched("launch_swiglu");
}

serve_status launch_add(float* x, const float* y, std::size_t count, void* stream) {
    if (count == 0) return {};
    add_kernel<<<blocks_for(count), threads_per_block, 0, as_stream(stream)>>>(x, y, count);
    return launched("launch_add");
}

serve_status launch_add_bias(float* y, const float* bias, int rows, int cols, void* stream) {
    if (rows <= 0 || cols <= 0) return {};
    add_bias_kernel<<<blocks_for(std::size_t(rows) * cols), threads_per_block, 0, as_stream(stream)>>>(
        y, bias, rows, cols);
    return launched("launch_add_bias");
}

serve_status launch_bank_apply(const bank_module_view& module, const adapted_tokens& tokens, const float* x,
                               float* y, float* z, void* stream) {
    if (tokens.count <= 0) return {};
    if (module.rank <= 0 || module.d_in <= 0 || module.d_out <= 0)
        return bad_argument("launch_bank_apply", "rank and module shape must be positive");
    if (module.rank > bank_max_rank)
        return bad_argument("launch_bank_apply", "rank above bank_max_rank (128)");
    if (tokens.tiles == nullptr || tokens.tile_count <= 0)
        return bad_argument("launch_bank_apply", "adapted tokens without tiles");
    const cudaStream_t s = as_stream(stream);
    const int splits = bank_shrink_splits(tokens.tile_count, module.d_in);
    const std::size_t shrink_shared = std::size_t(bank_shrink_shared_floats(module.rank)) * sizeof(float);
    if (module.precision != device_precision::fp32 && (!module.vt_half || !module.u_half))
        return bad_argument("launch_bank_apply", "16-bit bases missing");
    with_element(module.precision, [&](auto tag) {
        using E = typename decltype(tag)::type;
        const E* vt = module.precision == device_precision::fp32 ? reinterpret_cast<const E*>(module.vt)
                                                                 : static_cast<const E*>(module.vt_half);
        const E* u = module.precision == device_precision::fp32 ? reinterpret_cast<const E*>(module.u)
                                                                : static_cast<const E*>(module.u_half);
        bank_shrink_tiled_kernel<E>
            <<<dim3(unsigned(tokens.tile_count), unsigned(splits)), bank_block_threads, shrink_shared, s>>>(
                module, vt, tokens, x, z, splits);
        bank_expand_tiled_kernel<E>
            <<<dim3(unsigned(tokens.tile_count), blocks_for(std::size_t(module.d_out), bank_block_threads)),
               bank_block_threads, 0, s>>>(module, u, tokens, z, splits, y);
    });
    return launched("launch_bank_apply", 2);
}

serve_status launch_bgmv_apply(const lora_factor_desc* desc, device_precision p, int n, int d_in, int d_out,
                               int max_rank, const float* x, float* y, float* t_buf, void* stream) {
    if (n <= 0 || max_rank <= 0) return {};
    const cudaStream_t s = as_stream(stream);
    with_element(p, [&](auto tag) {
        using E = typename decltype(tag)::type;
        bgmv_shrink_kernel<E><<<blocks_for(std::size_t(n) * max_rank * 32), threads_per_block, 0, s>>>(
            desc, n, d_in, max_rank, x, t_buf);
        bgmv_expand_kernel<E><<<blocks_for(std::size_t(n) * d_out), threads_per_block, 0, s>>>(
            desc, n, d_out, max_rank, t_buf, y);
    });
    return launched("launch_bgmv_apply", 2);
}

serve_status launch_sample_rows(const float* logits, int rows, int vocab, int stride,
                                const sampling_row_params* params, const double* u, int* ids, double* prob,
                                int* out, void* stream) {
    if (rows <= 0) return {};
    if (vocab <= 0 || stride < vocab)
        return bad_argument("launch_sample_rows", "vocab must be positive and at most the row stride");
    sample_rows_kernel<<<unsigned(rows), threads_per_block, 0, as_stream(stream)>>>(
        logits, vocab, stride, params, u, ids, prob, out);
    return launched("launch_sample_rows");
}

serve_status launch_fill_uniform(void* p, device_precision prec, std::size_t count, std::uint64_t seed,
                                 float scale, void* stream) {
    if (count == 0) return {};
    with_element(prec, [&](auto tag) {
        using E = typename decltype(tag)::type;
        fill_uniform_kernel<E><<<blocks_for(count), threads_per_block, 0, as_stream(stream)>>>(
            static_cast<E*>(p), count, seed, scale);
    });
    return launched("launch_fill_uniform");
}

} // namespace lorafleet::kernels
