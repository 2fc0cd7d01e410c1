// kernels/bank_tiles.hpp on the CPU: the tiled segmented bank kernels of launch_bank_apply run here
// phase by phase and thread by thread, exactly as serve_kernels.cu composes them (every thread's staging,
// then every thread's accumulation, per chunk; per-split partials; the expand's core products then its
// columns),
// against a double-precision per-token reference of y += U_c Σ_i V_cᵀ x. Shared memory and workspaces
// start as NaN, so a value read before it is written poisons the result. Shapes cover ragged d_in (not a
// multiple of the staged chunk), ranks 1..128, segments longer than a tile, a lone token, JD-Full and
// JD-Diag cores, rows out of order and rows without an adapter (left untouched).
#include "engine/core/random.hpp"
#include "kernels/bank_tiles.hpp"
#include "kernels/serve_kernels.hpp"
#include "tests/support/bank_tiles_emulation.hpp"

#include <QtTest/QtTest>

#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

using namespace lorafleet;
namespace k = lorafleet::kernels;

namespace {

constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_vector(std::size_t n, random_stream& rng) {
    std::vector<float> v(n);
    for (auto& x : v)
        x = float(rng.normal());
    return v;
}

struct bank_case {
    int d_in, d_out, rank;
    bool full;
    std::vector<int> segment; // tokens per cluster, in cluster order (0 = none)
};

} // namespace

class TestBankTiles : public QObject {
    Q_OBJECT
private slots:
    void tilesCoverEachSegmentWithoutStraddling() {
        random_stream rng(3);
        for (int trial = 0; trial < 200; ++trial) {
            const int count = int(rng.below(90)) + 1, max_tokens = int(rng.below(20)) + 1;
            std::vector<int> cluster(static_cast<std::size_t>(count));
            int c = 0;
            for (auto& v : cluster) {
                if (rng.below(4) == 0) c += int(rng.below(3)) + 1;
                v = c;
            }
            std::vector<k::bank_tile> tiles(static_cast<std::size_t>(count));
            const int n = k::plan_bank_tiles(cluster.data(), count, max_tokens, tiles.data());
            int next = 0, segments = 1;
            for (int j = 1; j < count; ++j)
                segments += cluster[std::size_t(j)] != cluster[std::size_t(j - 1)];
            QVERIFY(n >= segments);
            for (int t = 0; t < n; ++t) {
                const auto& tile = tiles[std::size_t(t)];
                QCOMPARE(tile.first, next); // in order, no gap, no overlap
                QVERIFY(tile.count >= 1 && tile.count <= max_tokens);
                for (int j = tile.first; j < tile.first + tile.count; ++j)
                    QCOMPARE(cluster[std::size_t(j)], tile.cluster);
                // A tile shorter than the maximum ends its segment (tiles are as full as they can be).
                const int e = tile.first + tile.count;
                if (tile.count < max_tokens && e < count) QVERIFY(cluster[std::size_t(e)] != tile.cluster);
                next = e;
            }
            QCOMPARE(next, count);
        }
    }

    void splitsPartitionTheColumns() {
        for (const int d_in : {1, 63, 64, 65, 200, 4096, 14336})
            for (int tiles = 1; tiles <= 300; tiles += 37) {
                const int splits = k::bank_shrink_splits(tiles, d_in);
                QVERIFY(splits >= 1 && splits <= k::bank_max_splits);
                QVERIFY(splits <= (d_in + k::bank_shrink_k - 1) / k::bank_shrink_k);
                int next = 0;
                for (int s = 0; s < splits; ++s) {
                    int b = 0, e = 0;
                    k::bank_split_range(d_in, splits, s, &b, &e);
                    QCOMPARE(b, std::min(next, d_in));
                    QVERIFY(e >= b);
                    QVERIFY(b % k::bank_shrink_k == 0 || b == d_in);
                    next = e;
                }
                QCOMPARE(next, d_in);
            }
    }

    void tiledApplyMatchesPerTokenReference_data() {
        QTest::addColumn<int>("which");
        const char* names[] = {"full r16, ragged d_in, long segments",
                               "diag r16",
                               "full r128 (largest), one lone token",
                               "full r5, d_in below one chunk",
                               "full r1, many clusters",
                               "diag r64, d_in 1000 (splits), 40 tokens"};
        for (int i = 0; i < 6; ++i)
            QTest::newRow(names[i]) << i;
    }
    void tiledApplyMatchesPerTokenReference() {
        QFETCH(int, which);
        const bank_case cases[] = {
            {200, 300, 16, true, {17, 0, 33, 2}},  {200, 40, 16, false, {5, 16, 1}},
            {130, 70, 128, true, {1, 20}},         {40, 24, 5, true, {3, 3, 3}},
            {96, 33, 1, true, {1, 2, 1, 2, 1, 9}}, {1000, 260, 64, false, {40}},
        };
        const bank_case& c = cases[which];
        const int clusters = int(c.segment.size()), r = c.rank, adapter_count = 7;
        random_stream rng(100 + std::uint64_t(which));
        const auto vt = random_vector(std::size_t(clusters) * r * c.d_in, rng);
        const auto u = random_vector(std::size_t(clusters) * c.d_out * r, rng);
        const auto cores = random_vector(std::size_t(adapter_count) * (c.full ? r * r : r), rng);
        // Adapted tokens, cluster by cluster; their rows are a shuffled subset of n rows.
        std::vector<int> cluster, slot;
        for (int cl = 0; cl < clusters; ++cl)
            for (int i = 0; i < c.segment[std::size_t(cl)]; ++i) {
                cluster.push_back(cl);
                slot.push_back(int(rng.below(adapter_count)));
            }
        const int m = int(cluster.size()), n = m + 3;
        std::vector<int> rows(static_cast<std::size_t>(n));
        std::iota(rows.begin(), rows.end(), 0);
        for (int i = n - 1; i > 0; --i)
            std::swap(rows[std::size_t(i)], rows[rng.below(std::uint64_t(i) + 1)]);
        rows.resize(std::size_t(m));
        std::vector<k::bank_tile> tiles(static_cast<std::size_t>(m));
        const int tile_count = k::plan_bank_tiles(cluster.data(), m, k::bank_tile_tokens, tiles.data());
        const auto x = random_vector(std::size_t(n) * c.d_in, rng);
        const auto y0 = random_vector(std::size_t(n) * c.d_out, rng);

        k::bank_module_view M;
        M.vt = vt.data();
        M.u = u.data();
        M.cores = cores.data();
        M.d_in = c.d_in;
        M.d_out = c.d_out;
        M.rank = r;
        M.full = c.full;
        k::adapted_tokens T;
        T.row = rows.data();
        T.cluster = cluster.data();
        T.slot = slot.data();
        T.count = m;
        T.tiles = tiles.data();
        T.tile_count = tile_count;
        std::vector<float> y = y0;
        test::emulate_bank_apply(M, T, x.data(), y.data());

        // Reference in double, token by token.
        std::vector<double> want(y0.begin(), y0.end());
        for (int j = 0; j < m; ++j) {
            const int cl = cluster[std::size_t(j)], row = rows[std::size_t(j)];
            std::vector<double> z(std::size_t(r), 0.0), wv(std::size_t(r), 0.0);
            for (int p = 0; p < r; ++p)
                for (int i = 0; i < c.d_in; ++i)
                    z[std::size_t(p)] +=
                        double(vt[(std::size_t(cl) * r + p) * c.d_in + i]) * x[std::size_t(row) * c.d_in + i];
            const float* core = cores.data() + std::size_t(slot[std::size_t(j)]) * (c.full ? r * r : r);
            for (int p = 0; p < r; ++p)
                if (c.full)
                    for (int q = 0; q < r; ++q)
                        wv[std::size_t(p)] += double(core[p * r + q]) * z[std::size_t(q)];
                else
                    wv[std::size_t(p)] = double(core[p]) * z[std::size_t(p)];
            for (int o = 0; o < c.d_out; ++o)
                for (int p = 0; p < r; ++p)
                    want[std::size_t(row) * c.d_out + o] +=
                        double(u[(std::size_t(cl) * c.d_out + o) * r + p]) * wv[std::size_t(p)];
        }
        // Scale of the update: sums of d_in * r products of unit normals.
        const double scale = std::sqrt(double(c.d_in)) * r;
        for (std::size_t i = 0; i < y.size(); ++i)
            QVERIFY2(std::abs(double(y[i]) - want[i]) <= 2e-5 * scale + 1e-6 * std::abs(want[i]),
                     qPrintable(QString("element %1 (row %2): %3 vs %4")
                                    .arg(i)
                                    .arg(i / std::size_t(c.d_out))
                                    .arg(y[i])
                                    .arg(want[i])));
        // Rows without an adapter are bit-identical.
        std::vector<bool> adapted(std::size_t(n), false);
        for (int row : rows)
            adapted[std::size_t(row)] = true;
        for (int row = 0; row < n; ++row)
            if (!adapted[std::size_t(row)])
                for (int o = 0; o < c.d_out; ++o)
                    QCOMPARE(y[std::size_t(row) * c.d_out + o], y0[std::size_t(row) * c.d_out + o]);
    }
};

QTEST_GUILESS_MAIN(TestBankTiles)
#include "test_bank_tiles.moc"
