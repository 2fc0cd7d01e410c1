// The compressed bank's update as tiled segmented products (method.md §7; launch_bank_apply). The step's
// adapted tokens, sorted by cluster, are cut into TILES of at most bank_tile_tokens consecutive tokens of
// one cluster, so a block stages its cluster's V_cᵀ and U_c once for all of its tokens instead of once
// per token (the shared products the method is built on):
//   shrink  block (tile, split): for the tile's tokens j and p < r, the partial z_s[j, p] =
//           V_cᵀ[p, K_s] · x[row_j, K_s] over the split's columns K_s, x and V_cᵀ staged in shared memory
//           bank_shrink_k columns at a time; one partial per split (no atomics: deterministic)
//   expand  block (tile, column block): the tile's w_j = Σ_i z_j (z_j = the splits' partials summed in
//           split order, each adapter's own core) computed into shared memory, then thread o adds
//           U_c[o, :] · w_j to y[row_j, o] for every token j of the tile (U_c's row read once per tile)
// Two launches per module; the core product (r² per token) is redone by each column block of a tile,
// which costs less than a launch and a workspace round trip.
// Every phase of a kernel between two __syncthreads() is a function of (block, thread) here, so the CPU
// tests run these very bodies thread by thread and phase by phase (tests/kernels_host/test_bank_tiles.cpp)
// and the kernels in serve_kernels.cu are thin loops over them. Row-major; the bases U_c, V_cᵀ are stored
// as E (float, or bf16_bits / fp16_bits: half_elements.hpp) and read into float; cores, x, y and every
// sum are float (fp32 accumulation); sums in index order within a chunk. Pure functions: any thread.
#pragma once

#include "kernels/half_elements.hpp"
#include "kernels/serve_hd.hpp"

namespace lorafleet::kernels {

constexpr int bank_tile_tokens = 16;                  // tokens of one cluster per tile
constexpr int bank_shrink_k = 64;                     // d_in columns staged per shrink step
constexpr int bank_shrink_stride = bank_shrink_k + 1; // padded shared row: no bank conflicts across p
constexpr int bank_max_rank = 128;                    // largest r the tiled kernels take
constexpr int bank_block_threads = 256;               // threads per block of the shrink and expand
constexpr int bank_max_splits = 8;                    // d_in splits of the shrink (grid y)
constexpr int bank_pairs_per_thread =
    bank_tile_tokens * bank_max_rank / bank_block_threads; // (j, p) / thread

// A run of consecutive adapted tokens [first, first + count) of one cluster.
struct bank_tile {
    int first = 0;
    int count = 0;
    int cluster = 0;
};

// Cuts the cluster-sorted tokens (cluster[j], j < count) into tiles of at most max_tokens tokens that
// never straddle two clusters; `tiles` has room for `count` entries. Returns the number of tiles.
inline int plan_bank_tiles(const int* cluster, int count, int max_tokens, bank_tile* tiles) {
    int n = 0;
    for (int j = 0; j < count;) {
        int e = j + 1;
        while (e < count && e - j < max_tokens && cluster[e] == cluster[j])
            ++e;
        tiles[n++] = bank_tile{j, e - j, cluster[j]};
        j = e;
    }
    return n;
}

// Shared floats of one shrink block: x [bank_tile_tokens, stride] then V_cᵀ [rank, stride].
LORAFLEET_HD int bank_shrink_shared_floats(int rank) {
    return (bank_tile_tokens + rank) * bank_shrink_stride;
}

// Columns [*begin, *end) of d_in that split s of `splits` reduces (whole bank_shrink_k chunks; a split
// may be empty when there are fewer chunks than splits).
LORAFLEET_HD void bank_split_range(int d_in, int splits, int s, int* begin, int* end) {
    const int chunks = (d_in + bank_shrink_k - 1) / bank_shrink_k;
    const int per = (chunks + splits - 1) / splits;
    const int b = s * per * bank_shrink_k, e = b + per * bank_shrink_k;
    *begin = b < d_in ? b : d_in;
    *end = e < d_in ? e : d_in;
}

// How many splits of d_in the shrink of `tiles` tiles uses: enough blocks to fill a large device
// (tiles x splits >= 256), at most bank_max_splits, at most one per bank_shrink_k chunk, at least 1.
LORAFLEET_HD int bank_shrink_splits(int tiles, int d_in) {
    const int chunks = (d_in + bank_shrink_k - 1) / bank_shrink_k;
    int s = tiles > 0 ? (256 + tiles - 1) / tiles : 1;
    if (s > bank_max_splits) s = bank_max_splits;
    if (s > chunks) s = chunks;
    return s < 1 ? 1 : s;
}

// Shrink phase 1: stage columns [k0, k0 + klen) of the tile's x rows and of V_cᵀ (zeros past klen).
// `row` [m] maps an adapted token to its row of x [*, d_in]; vt is [clusters, rank, d_in].
template <class E>
LORAFLEET_HD void bank_shrink_stage(const E* vt, const int* row, const float* x, int d_in, int rank,
                                    bank_tile tile, int k0, int klen, float* xs, float* vs, int tid,
                                    int threads) {
    for (int e = tid; e < tile.count * bank_shrink_k; e += threads) {
        const int j = e / bank_shrink_k, k = e % bank_shrink_k;
        xs[j * bank_shrink_stride + k] =
            k < klen ? x[static_cast<long long>(row[tile.first + j]) * d_in + k0 + k] : 0.0f;
    }
    const E* v = vt + static_cast<long long>(tile.cluster) * rank * d_in;
    for (int e = tid; e < rank * bank_shrink_k; e += threads) {
        const int p = e / bank_shrink_k, k = e % bank_shrink_k;
        vs[p * bank_shrink_stride + k] =
            k < klen ? to_float(v[static_cast<long long>(p) * d_in + k0 + k]) : 0.0f;
    }
}

// Shrink phase 2: thread tid's pairs q = tid + i * threads (j = q / rank, p = q % rank) accumulate the
// staged chunk's dot products into acc[i].
LORAFLEET_HD void bank_shrink_accumulate(const float* xs, const float* vs, bank_tile tile, int rank, int klen,
                                         float* acc, int tid, int threads) {
    for (int i = 0; i < bank_pairs_per_thread; ++i) {
        const int q = tid + i * threads;
        if (q >= tile.count * rank) break;
        const float* a = xs + (q / rank) * bank_shrink_stride;
        const float* b = vs + (q % rank) * bank_shrink_stride;
        float s = 0.0f;
        for (int k = 0; k < klen; ++k)
            s += a[k] * b[k];
        acc[i] += s;
    }
}

// Shrink phase 3: the pairs' sums into split s's partials zpart [splits, m, rank].
LORAFLEET_HD void bank_shrink_store(const float* acc, bank_tile tile, int rank, int split, int m,
                                    float* zpart, int tid, int threads) {
    for (int i = 0; i < bank_pairs_per_thread; ++i) {
        const int q = tid + i * threads;
        if (q >= tile.count * rank) break;
        const int j = tile.first + q / rank, p = q % rank;
        zpart[(static_cast<long long>(split) * m + j) * rank + p] = acc[i];
    }
}

// Core of adapted token j, element p: (Σ z_j)[p] (full core [rank, rank] row-major) or σ[p] z_j[p]
// (diagonal core [rank]), z_j[q] = Σ_s zpart[s, j, q] summed in split order.
LORAFLEET_HD float bank_core_from_splits(const float* core, bool full, const float* zpart, int splits, int m,
                                         int j, int p, int rank) {
    const float* zj = zpart + static_cast<long long>(j) * rank;
    const long long split_stride = static_cast<long long>(m) * rank;
    float acc = 0.0f;
    for (int q = full ? 0 : p; q < (full ? rank : p + 1); ++q) {
        float z = 0.0f;
        for (int t = 0; t < splits; ++t)
            z += zj[t * split_stride + q];
        acc += (full ? core[p * rank + q] : core[p]) * z;
    }
    return acc;
}

// Expand phase 1: the tile's core products into ws [tile.count, rank]: ws[j, p] = bank_core_from_splits
// of token tile.first + j with its adapter's core (cores [slots, rank * rank] full or [slots, rank]
// diagonal, slot [m]).
LORAFLEET_HD void bank_expand_stage(const float* cores, bool full, const int* slot, const float* zpart,
                                    int splits, int m, bank_tile tile, int rank, float* ws, int tid,
                                    int threads) {
    const long long core_size = full ? static_cast<long long>(rank) * rank : rank;
    for (int e = tid; e < tile.count * rank; e += threads) {
        const int j = tile.first + e / rank, p = e % rank;
        ws[e] = bank_core_from_splits(cores + slot[j] * core_size, full, zpart, splits, m, j, p, rank);
    }
}

// Expand phase 2: output column o of every token of the tile: y[row_j, o] += U_c[o, :] · w_j, with u
// [clusters, d_out, rank] and y [*, d_out]. Columns o >= d_out do nothing.
template <class E>
LORAFLEET_HD void bank_expand_column(const E* u, const int* row, const float* ws, int d_out, int rank,
                                     bank_tile tile, int o, float* y) {
    if (o >= d_out) return;
    const E* uo = u + (static_cast<long long>(tile.cluster) * d_out + o) * rank;
    for (int j = 0; j < tile.count; ++j) {
        const float* wj = ws + j * rank;
        float s = 0.0f;
        for (int q = 0; q < rank; ++q)
            s += to_float(uo[q]) * wj[q];
        y[static_cast<long long>(row[tile.first + j]) * d_out + o] += s;
    }
}

} // namespace lorafleet::kernels
