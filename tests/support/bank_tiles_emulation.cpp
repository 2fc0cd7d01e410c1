// See bank_tiles_emulation.hpp.
#include "tests/support/bank_tiles_emulation.hpp"

#include "kernels/bank_tiles.hpp"

#include <algorithm>
#include <limits>
#include <numeric>

namespace lorafleet::test {

namespace k = lorafleet::kernels;

namespace {
constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();
}

void emulate_bank_apply(const k::bank_module_view& M, const k::adapted_tokens& T, const float* x, float* y) {
    const int m = T.count, r = M.rank, threads = k::bank_block_threads;
    const int splits = k::bank_shrink_splits(T.tile_count, M.d_in);
    std::vector<float> z(std::size_t(k::bank_max_splits) * m * r, nan_f);
    for (int b = 0; b < T.tile_count; ++b)
        for (int split = 0; split < splits; ++split) {
            std::vector<float> shared(std::size_t(k::bank_shrink_shared_floats(r)), nan_f);
            float* xs = shared.data();
            float* vs = shared.data() + k::bank_tile_tokens * k::bank_shrink_stride;
            std::vector<float> acc(std::size_t(threads) * k::bank_pairs_per_thread, 0.0f);
            int begin = 0, end = 0;
            k::bank_split_range(M.d_in, splits, split, &begin, &end);
            for (int k0 = begin; k0 < end; k0 += k::bank_shrink_k) {
                const int klen = std::min(k::bank_shrink_k, end - k0);
                for (int tid = 0; tid < threads; ++tid)
                    k::bank_shrink_stage(M.vt, T.row, x, M.d_in, r, T.tiles[b], k0, klen, xs, vs, tid,
                                         threads);
                for (int tid = 0; tid < threads; ++tid)
                    k::bank_shrink_accumulate(xs, vs, T.tiles[b], r, klen,
                                              acc.data() + std::size_t(tid) * k::bank_pairs_per_thread, tid,
                                              threads);
            }
            for (int tid = 0; tid < threads; ++tid)
                k::bank_shrink_store(acc.data() + std::size_t(tid) * k::bank_pairs_per_thread, T.tiles[b], r,
                                     split, m, z.data(), tid, threads);
        }
    const int column_blocks = (M.d_out + threads - 1) / threads;
    for (int b = 0; b < T.tile_count; ++b)
        for (int cb = 0; cb < column_blocks; ++cb) {
            std::vector<float> ws(std::size_t(k::bank_tile_tokens) * k::bank_max_rank, nan_f);
            for (int tid = 0; tid < threads; ++tid)
                k::bank_expand_stage(M.cores, M.full, T.slot, z.data(), splits, m, T.tiles[b], r, ws.data(),
                                     tid, threads);
            for (int tid = 0; tid < threads; ++tid)
                k::bank_expand_column(M.u, T.row, ws.data(), M.d_out, r, T.tiles[b], cb * threads + tid, y);
        }
}

void emulate_bank_module(const bank::compressed_bank& bank, std::size_t m, const std::vector<int>& token_slot,
                         const float* x, float* y, int n) {
    const auto& mod = bank.modules[m];
    const int r = bank.rank, d_in = int(mod.d_in), d_out = int(mod.d_out);
    const std::size_t clusters = bank.bases[m].size();
    std::vector<float> vt(clusters * std::size_t(r) * d_in, 0.0f), u(clusters * std::size_t(d_out) * r, 0.0f);
    for (std::size_t c = 0; c < clusters; ++c) {
        const auto& basis = bank.bases[m][c];
        if (basis.empty()) continue;
        std::copy(basis.vt.begin(), basis.vt.end(), vt.begin() + std::ptrdiff_t(c * r * d_in));
        std::copy(basis.u.begin(), basis.u.end(), u.begin() + std::ptrdiff_t(c * d_out * r));
    }
    std::vector<int> row;
    for (int t = 0; t < n; ++t)
        if (token_slot[std::size_t(t)] >= 0) row.push_back(t);
    const auto cluster_of = [&](int t) {
        return bank.adapters[std::size_t(token_slot[std::size_t(t)])].cluster;
    };
    std::stable_sort(row.begin(), row.end(), [&](int a, int b) { return cluster_of(a) < cluster_of(b); });
    std::vector<int> cluster, slot;
    for (int t : row) {
        cluster.push_back(cluster_of(t));
        slot.push_back(token_slot[std::size_t(t)]);
    }
    std::vector<k::bank_tile> tiles(row.size());
    k::bank_module_view M;
    M.vt = vt.data();
    M.u = u.data();
    M.cores = bank.cores[m].data(); // zeros where an adapter lacks the module
    M.d_in = d_in;
    M.d_out = d_out;
    M.rank = r;
    M.full = bank.kind == compress::jd_method::full;
    k::adapted_tokens T;
    T.row = row.data();
    T.cluster = cluster.data();
    T.slot = slot.data();
    T.count = int(row.size());
    T.tiles = tiles.data();
    T.tile_count = k::plan_bank_tiles(cluster.data(), T.count, k::bank_tile_tokens, tiles.data());
    if (T.count > 0) emulate_bank_apply(M, T, x, y);
}

} // namespace lorafleet::test
