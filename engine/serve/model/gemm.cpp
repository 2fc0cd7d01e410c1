// gemm_nt (see gemm.hpp). Structure: the output is cut into tiles of MR rows of x by NR rows of w; a tile
// keeps MR·NR vector accumulators in registers over the whole k loop, so each x and w vector loaded feeds
// several products. Edge tiles use the same per-element code with smaller MR/NR (template instances), so
// the summation order of an element never depends on its tile. Work is split across threads by blocks of
// w's rows (each element is computed entirely by one thread).
#include "engine/serve/model/gemm.hpp"

#include "engine/serve/scheduling/worker_pool.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace lorafleet::serve {
namespace {

constexpr int lanes = 8;    // partial sums per dot product (one AVX register)
constexpr int rows_w = 3;   // NR: rows of w per tile
constexpr int rows_x = 4;   // MR: rows of x per tile
constexpr int block_w = 48; // rows of w per parallel work item (a multiple of rows_w)

// ---- Portable kernel ---------------------------------------------------------------------------------
// Written so that the per-element order matches nothing but itself: acc[l] += x[k+l]·w[k+l] for each
// lane (multiply, then add: no FMA without -mfma), reduced as in reduce8, then the tail.
inline float reduce8(const float* a) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

template <int MR, int NR>
void tile_portable(int k, float alpha, const float* x, int ldx, const float* w, int ldw, float* y, int ldy,
                   bool accumulate) {
    float acc[MR][NR][lanes] = {};
    const int kv = k - k % lanes;
    for (int p = 0; p < kv; p += lanes)
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NR; ++j)
                for (int l = 0; l < lanes; ++l)
                    acc[i][j][l] += x[i * ldx + p + l] * w[j * ldw + p + l];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) {
            float tail = 0;
            for (int p = kv; p < k; ++p)
                tail += x[i * ldx + p] * w[j * ldw + p];
            const float v = alpha * (reduce8(acc[i][j]) + tail);
            y[i * ldy + j] = accumulate ? y[i * ldy + j] + v : v;
        }
}

// ---- AVX2 + FMA kernel ---------------------------------------------------------------------------------
[[gnu::target("avx2,fma")]] inline float reduce8_avx(__m256 v) {
    alignas(32) float a[lanes];
    _mm256_store_ps(a, v);
    return reduce8(a);
}

template <int MR, int NR>
[[gnu::target("avx2,fma")]] void tile_avx2(int k, float alpha, const float* x, int ldx, const float* w,
                                           int ldw, float* y, int ldy, bool accumulate) {
    // The small loops are unrolled completely so that the accumulators live in registers, not on the stack.
    __m256 acc[MR][NR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 3
        for (int j = 0; j < NR; ++j)
            acc[i][j] = _mm256_setzero_ps();
    const int kv = k - k % lanes;
    for (int p = 0; p < kv; p += lanes) {
        __m256 wv[NR];
#pragma GCC unroll 3
        for (int j = 0; j < NR; ++j)
            wv[j] = _mm256_loadu_ps(w + j * ldw + p);
#pragma GCC unroll 4
        for (int i = 0; i < MR; ++i) {
            const __m256 xv = _mm256_loadu_ps(x + i * ldx + p);
#pragma GCC unroll 3
            for (int j = 0; j < NR; ++j)
                acc[i][j] = _mm256_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) {
            float tail = 0;
            for (int p = kv; p < k; ++p)
                tail += x[i * ldx + p] * w[j * ldw + p];
            const float v = alpha * (reduce8_avx(acc[i][j]) + tail);
            y[i * ldy + j] = accumulate ? y[i * ldy + j] + v : v;
        }
}

// ---- Tiling over one block of w's rows
// ---------------------------------------------------------------------
using tile_fn = void (*)(int, float, const float*, int, const float*, int, float*, int, bool);

template <bool Avx, int MR, int NR> constexpr tile_fn tile() {
    if constexpr (Avx)
        return &tile_avx2<MR, NR>;
    else
        return &tile_portable<MR, NR>;
}

// Kernels indexed by [MR - 1][NR - 1].
template <bool Avx> struct tile_table {
    tile_fn fn[rows_x][rows_w] = {
        {tile<Avx, 1, 1>(), tile<Avx, 1, 2>(), tile<Avx, 1, 3>()},
        {tile<Avx, 2, 1>(), tile<Avx, 2, 2>(), tile<Avx, 2, 3>()},
        {tile<Avx, 3, 1>(), tile<Avx, 3, 2>(), tile<Avx, 3, 3>()},
        {tile<Avx, 4, 1>(), tile<Avx, 4, 2>(), tile<Avx, 4, 3>()},
    };
};

bool detect_avx2() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const tile_fn (&kernels())[rows_x][rows_w] {
    static const tile_table<true> avx;
    static const tile_table<false> portable;
    static const bool use_avx = detect_avx2();
    return use_avx ? avx.fn : portable.fn;
}

// Rows [j0, j1) of w against every row of x. A 16-bit w is widened one tile (NR rows) at a time into a
// per-thread panel, which then feeds every tile of x's rows: the kernels see float32 rows either way.
void run_block(int j0, int j1, int m, int k, float alpha, const float* x, int ldx, const void* w,
               weight_dtype wt, int ldw, float* y, int ldy, bool accumulate) {
    const auto& fn = kernels();
    thread_local std::vector<float> panel;
    const std::size_t esize = weight_dtype_size(wt);
    for (int j = j0; j < j1; j += rows_w) {
        const int nr = std::min(rows_w, j1 - j);
        const float* wj;
        int ld;
        if (wt == weight_dtype::f32) {
            wj = static_cast<const float*>(w) + std::size_t(j) * ldw;
            ld = ldw;
        } else {
            if (panel.size() < std::size_t(nr) * std::size_t(k))
                panel.resize(std::size_t(rows_w) * std::size_t(k));
            for (int r = 0; r < nr; ++r)
                widen_to_f32(static_cast<const char*>(w) + (std::size_t(j) + r) * std::size_t(ldw) * esize,
                             wt, std::size_t(k), panel.data() + std::size_t(r) * k);
            wj = panel.data();
            ld = k;
        }
        for (int i = 0; i < m; i += rows_x) {
            const int mr = std::min(rows_x, m - i);
            fn[mr - 1][nr - 1](k, alpha, x + std::size_t(i) * ldx, ldx, wj, ld, y + std::size_t(i) * ldy + j,
                               ldy, accumulate);
        }
    }
}

} // namespace

bool gemm_uses_avx2() {
    static const bool use_avx = detect_avx2();
    return use_avx;
}

void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const float* w, int ldw, float* y,
             int ldy, bool accumulate, worker_pool* pool) {
    gemm_nt(m, n, k, alpha, x, ldx, w, weight_dtype::f32, ldw, y, ldy, accumulate, pool, gemm_fused{});
}

void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const float* w, int ldw, float* y,
             int ldy, bool accumulate, worker_pool* pool, const gemm_fused& fused) {
    gemm_nt(m, n, k, alpha, x, ldx, w, weight_dtype::f32, ldw, y, ldy, accumulate, pool, fused);
}

void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const void* w, weight_dtype wt,
             int ldw, float* y, int ldy, bool accumulate, worker_pool* pool) {
    gemm_nt(m, n, k, alpha, x, ldx, w, wt, ldw, y, ldy, accumulate, pool, gemm_fused{});
}

void gemm_nt(int m, int n, int k, float alpha, const float* x, int ldx, const void* w, weight_dtype wt,
             int ldw, float* y, int ldy, bool accumulate, worker_pool* pool, const gemm_fused& fused) {
    if (m <= 0 || n <= 0) return;
    const std::size_t blocks = std::size_t((n + block_w - 1) / block_w);
    const std::size_t pre = fused.pre ? fused.pre_items : 0;
    // Threads pay off once a block holds real work (a few hundred thousand multiply-adds in all).
    const bool parallel =
        pool && pool->size() > 1 && blocks + pre > 1 && double(m) * n * k + fused.work >= 2.0e5;
    std::atomic<std::size_t> pre_done{0};
    auto item = [&](std::size_t i, int worker) {
        if (i < pre) {
            // Counted even if it throws (the pool rethrows after the loop), so no block waits forever.
            struct done_guard {
                std::atomic<std::size_t>& done;
                ~done_guard() { done.fetch_add(1, std::memory_order_release); }
            } guard{pre_done};
            fused.pre(i, worker);
            return;
        }
        const int j0 = static_cast<int>(i - pre) * block_w, j1 = std::min(n, j0 + block_w);
        run_block(j0, j1, m, k, alpha, x, ldx, w, wt, ldw, y, ldy, accumulate);
        if (!fused.post) return;
        // Items are claimed in index order, so every pre item is already running on some thread: the wait
        // is bounded by one item's time. Yield now and then: on a loaded machine that thread may be parked.
        for (unsigned spins = 0; pre_done.load(std::memory_order_acquire) < pre; ++spins) {
            if (spins % 64 == 63)
                std::this_thread::yield();
            else
                _mm_pause();
        }
        fused.post(j0, j1, worker);
    };
    if (parallel) {
        // A one-reference closure fits std::function's inline storage: no allocation per product.
        pool->run(pre + blocks, [&item](std::size_t i, int worker) { item(i, worker); });
    } else {
        // One thread: the pre items, every block, then one post over all columns (the same bits as a
        // post per block, since posts of disjoint column ranges are independent; fewer calls).
        for (std::size_t i = 0; i < pre; ++i)
            item(i, 0);
        for (std::size_t b = 0; b < blocks; ++b) {
            const int j0 = static_cast<int>(b) * block_w;
            run_block(j0, std::min(n, j0 + block_w), m, k, alpha, x, ldx, w, wt, ldw, y, ldy, accumulate);
        }
        if (fused.post) fused.post(0, n, 0);
    }
}

} // namespace lorafleet::serve
