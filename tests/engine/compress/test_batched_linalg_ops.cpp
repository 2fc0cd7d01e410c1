// LinalgOps' grouped working set (select_groups + the *_groups operations) against the single working-set
// operations: every group's result must be BIT-IDENTICAL to a 1-thread HostLinalgOps that selected that
// group alone for HostLinalgOps' parallel override (1 and 3 threads, on a batch large enough that the
// groups run on the workers), and to the same ops' single operation for LinalgOps' default loops (what
// CudaLinalgOps inherits for the operations it does not override); a subset of the groups may be active,
// in any order. Plus the argument checks.
#include "engine/compress/host_linalg_ops.hpp"
#include "engine/compress/random_matrix.hpp"
#include "engine/core/error.hpp"
#include "tests/engine/compress/test_compress_ops_compare.hpp"
#include "tests/support/group_step_inputs.hpp"
#include "tests/support/same_bits.hpp"

#include <QtTest/QtTest>

#include <cstring>

using namespace lorafleet;
using namespace lorafleet::compress;
namespace oc = lorafleet::test::ops_compare;

namespace {

using test::same_bits;

// The grouped calls of `ops` (through `grouped`, which is either the virtual call or the base default)
// against `single` selecting each group in turn.
void expect_groups_equal_single(HostLinalgOps& ops, bool base_default, const module_batch& batch,
                                const std::vector<std::vector<std::size_t>>& groups) {
    // The override must match a 1-thread ops whatever its own thread count; the default loop runs the
    // single operations of `ops` itself, so it matches an ops with the same thread count.
    HostLinalgOps single(base_default ? ops.threads() : 1);
    random_stream g(17);
    ops.select_groups(batch, groups);
    QCOMPARE(ops.group_count(), groups.size());
    const std::vector<std::size_t> active = {3, 0, 2}; // a subset, out of order
    for (const ops_side s : {ops_side::u, ops_side::v}) {
        const auto d = s == ops_side::u ? batch.d_out : batch.d_in;
        const auto in = test::random_group_step_inputs(ops, active, d, 5, g);
        const auto &x = in.x, &z = in.z, &q = in.q;
        const auto &c = in.c, &f = in.f;
        const auto& k = in.k;
        const auto pr =
            base_default ? ops.LinalgOps::project_groups(s, active, x) : ops.project_groups(s, active, x);
        const auto ac = base_default ? ops.LinalgOps::accumulate_groups(s, active, z)
                                     : ops.accumulate_groups(s, active, z);
        const auto ap = base_default ? ops.LinalgOps::apply_blocks_groups(s, active, c, q)
                                     : ops.apply_blocks_groups(s, active, c, q);
        const auto bg =
            base_default ? ops.LinalgOps::block_grams_groups(s, active) : ops.block_grams_groups(s, active);
        const auto be = base_default ? ops.LinalgOps::block_grams_exact_groups(s, active)
                                     : ops.block_grams_exact_groups(s, active);
        const auto ts = base_default ? ops.LinalgOps::top_small_gram_groups(s, active, f, k)
                                     : ops.top_small_gram_groups(s, active, f, k);
        const auto tl = base_default ? ops.LinalgOps::top_large_gram_groups(s, active, f, 3)
                                     : ops.top_large_gram_groups(s, active, f, 3);
        QCOMPARE(pr.size(), active.size());
        for (std::size_t i = 0; i < active.size(); ++i) {
            single.select(batch, groups[active[i]]);
            QVERIFY2(same_bits(pr[i], single.project(s, x[i])), "project");
            QVERIFY2(same_bits(ac[i], single.accumulate(s, z[i])), "accumulate");
            QVERIFY2(same_bits(ap[i], single.apply_blocks(s, c[i], q[i])), "apply_blocks");
            const auto sg = single.block_grams(s);
            const auto se = single.block_grams_exact(s);
            QCOMPARE(bg[i].size(), sg.size());
            for (std::size_t m = 0; m < sg.size(); ++m) {
                QVERIFY2(same_bits(bg[i][m], sg[m]), "block_grams");
                QVERIFY2(same_bits(be[i][m], se[m]), "block_grams_exact");
            }
            QVERIFY2(same_bits(ts[i], single.top_small_gram(s, f[i], k[i])), "top_small_gram");
            QVERIFY2(same_bits(tl[i], single.top_large_gram(s, f[i], 3)), "top_large_gram");
        }
    }
    std::vector<matrix> qs = {gaussian_matrix(40, 6, g), gaussian_matrix(33, 2, g), gaussian_matrix(9, 9, g)};
    const auto qm = base_default ? ops.LinalgOps::qr_many(qs) : ops.qr_many(qs);
    for (std::size_t i = 0; i < qs.size(); ++i) {
        const auto want = single.qr(qs[i]);
        QVERIFY2(same_bits(qm[i].first, want.first) && same_bits(qm[i].second, want.second), "qr_many");
    }
}

std::vector<std::vector<std::size_t>> groups_of(std::size_t n) {
    // Unequal: every 5th adapter into group 0, the rest round-robin into 1..3, one group of one.
    std::vector<std::vector<std::size_t>> g(5);
    for (std::size_t i = 0; i + 1 < n; ++i)
        g[i % 5 == 0 ? 0 : 1 + i % 3].push_back(i);
    g[4].push_back(n - 1);
    return g;
}

} // namespace

class TestBatchedLinalgOps : public QObject {
    Q_OBJECT

private slots:
    void groupsEqualSingleWorkingSets_data() {
        QTest::addColumn<int>("threads");
        QTest::addColumn<bool>("base_default");
        QTest::addColumn<bool>("large");
        for (const bool large : {false, true})
            for (const int threads : {1, 3}) {
                const std::string size = large ? "large" : "small";
                QTest::newRow((size + ", host override, " + std::to_string(threads) + " threads").c_str())
                    << threads << false << large;
                QTest::newRow((size + ", LinalgOps default, " + std::to_string(threads) + " threads").c_str())
                    << threads << true << large;
            }
    }
    void groupsEqualSingleWorkingSets() {
        QFETCH(int, threads);
        QFETCH(bool, base_default);
        QFETCH(bool, large);
        // large: above thread_pool::serial_flops, so the override's groups run on the workers.
        const auto batch = large ? oc::planted_batch(1024, 768, 4, 12, false, false, 91)
                                 : oc::planted_batch(48, 40, 3, 6, false, false, 92);
        HostLinalgOps ops(threads);
        expect_groups_equal_single(ops, base_default, batch, groups_of(batch.size()));
    }

    void badGroupsAreRejected() {
        const auto batch = oc::planted_batch(48, 40, 3, 2, false, false, 93);
        HostLinalgOps ops(2);
        const std::vector<std::vector<std::size_t>> with_empty = {{0, 1}, {}};
        QVERIFY_THROWS_EXCEPTION(usage_error, ops.select_groups(batch, with_empty));
        const std::vector<std::vector<std::size_t>> outside = {{0, 1}, {2, 99}};
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, ops.select_groups(batch, outside));
        const std::vector<std::vector<std::size_t>> groups = {{0, 1}, {2, 3, 4}};
        ops.select_groups(batch, groups);
        random_stream g(1);
        const std::vector<matrix> one = {gaussian_matrix(48, 2, g)};
        const std::vector<matrix> two = {one[0], one[0]};
        const std::vector<std::size_t> twice = {1, 1}, past = {2}, both = {0, 1};
        QVERIFY_THROWS_EXCEPTION(usage_error, ops.project_groups(ops_side::u, twice, two));
        QVERIFY_THROWS_EXCEPTION(usage_error, ops.project_groups(ops_side::u, past, one));
        QVERIFY_THROWS_EXCEPTION(usage_error, ops.project_groups(ops_side::u, both, one));
        QVERIFY_THROWS_EXCEPTION(usage_error, ops.LinalgOps::project_groups(ops_side::u, both, one));
        const std::vector<matrix> wrong = {gaussian_matrix(47, 2, g), one[0]};
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, ops.project_groups(ops_side::u, both, wrong));
    }
};

QTEST_GUILESS_MAIN(TestBatchedLinalgOps)
#include "test_batched_linalg_ops.moc"
