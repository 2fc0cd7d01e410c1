// The clustering alternation's reassignment rule (engine/compress/reassignment.hpp) on hand-made totals
// with EXACT ties (duplicated columns) and ties perturbed by a fraction of the margin, the empty-cluster
// reseeding, the projector distance behind the residual reuse (against the analytic sine of a planted
// angle), and end to end: a duplicated adapter lands in its twin's cluster.
#include "engine/compress/cpu_backend.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "engine/compress/jd_steps.hpp"
#include "engine/compress/random_matrix.hpp"
#include "engine/compress/reassignment.hpp"
#include "engine/core/error.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;
using namespace lorafleet::compress;

namespace {

dmatrix totals_of(const std::vector<std::vector<double>>& rows) {
    dmatrix t(static_cast<std::int64_t>(rows.size()), static_cast<std::int64_t>(rows[0].size()));
    for (std::size_t i = 0; i < rows.size(); ++i)
        for (std::size_t c = 0; c < rows[i].size(); ++c)
            t(static_cast<std::int64_t>(i), static_cast<std::int64_t>(c)) = rows[i][c];
    return t;
}

// A source that repeats the adapters of another source and adds a copy of adapter `twin` at the end.
class TwinSource final : public ModuleSource {
public:
    TwinSource(ModuleSource& inner, std::size_t twin) : m_inner(inner), m_twin(twin) {}
    std::size_t adapter_count() const override { return m_inner.adapter_count() + 1; }
    std::size_t module_count() const override { return m_inner.module_count(); }
    module_shape module(std::size_t m) const override { return m_inner.module(m); }
    module_batch load(std::size_t m) override {
        module_batch b = m_inner.load(m);
        for (const auto& f : b.adapters)
            if (f.adapter == m_twin) {
                adapter_factors copy = f;
                copy.adapter = m_inner.adapter_count();
                b.adapters.push_back(copy);
                break;
            }
        b.norms2.clear();
        return b;
    }

private:
    ModuleSource& m_inner;
    std::size_t m_twin;
};

} // namespace

class TestFleetReassignment : public QObject {
    Q_OBJECT

private slots:
    void clear_improvements_move_to_the_best_cluster() {
        const auto t = totals_of({{0.5, 0.1, 0.3}, {0.2, 0.4, 0.05}, {0.1, 0.2, 0.3}});
        const std::vector<int> cur{0, 0, 1}, modules{2, 2, 2};
        const auto next = reassign(cur, t, modules);
        QCOMPARE(next, (std::vector<int>{1, 2, 0}));
    }

    void exact_ties_keep_the_current_cluster_else_take_the_lowest_index() {
        // Columns 1 and 3 are the same basis (duplicated): exactly equal totals for every adapter.
        const auto t = totals_of({{0.9, 0.2, 0.8, 0.2}, {0.9, 0.2, 0.8, 0.2}, {0.9, 0.2, 0.8, 0.2}});
        const std::vector<int> modules{3, 3, 3};
        QCOMPARE(reassign(std::vector<int>{3, 1, 0}, t, modules), (std::vector<int>{3, 1, 1}));
        // The same in any column order of the twins: the lowest index of the tied set, never the first
        // one scanned that beats the current cluster.
        const auto u = totals_of({{0.2, 0.9, 0.2, 0.8}});
        QCOMPARE(reassign(std::vector<int>{1}, u, std::vector<int>{3}), (std::vector<int>{0}));
        QCOMPARE(reassign(std::vector<int>{3}, u, std::vector<int>{3}), (std::vector<int>{0}));
        QCOMPARE(reassign(std::vector<int>{2}, u, std::vector<int>{3}), (std::vector<int>{2}));
    }

    void ties_within_half_the_margin_resolve_the_same_way_either_side() {
        // A backend's residuals carry fp noise: the twin column perturbed by +-0.5 margin must give the
        // same decision as the exact tie.
        const int modules = 4;
        const double base = 0.2;
        for (const double sign : {-1.0, 1.0}) {
            const double tie = reassignment_margin(base, modules);
            const auto t =
                totals_of({{0.9, base, base + sign * 0.5 * tie}, {0.9, base + sign * 0.5 * tie, base}});
            const std::vector<int> counts{modules, modules};
            QCOMPARE(reassign(std::vector<int>{2, 1}, t, counts), (std::vector<int>{2, 1})); // stays
            QCOMPARE(reassign(std::vector<int>{0, 0}, t, counts), (std::vector<int>{1, 1})); // lowest
            // Beyond the margin the clearly better twin wins.
            const auto far = totals_of({{0.9, base, base - 2.0 * tie}});
            QCOMPARE(reassign(std::vector<int>{1}, far, std::vector<int>{modules}), (std::vector<int>{2}));
        }
    }

    void reseeding_gives_an_empty_cluster_the_worst_fit_adapter() {
        // Cluster 2 is empty; adapters 1 and 3 tie for the worst fit (0.7): the lower index moves.
        // Adapter 4 is a singleton of cluster 1 with a worse fit but may not leave its cluster empty.
        const auto t = totals_of(
            {{0.1, 0.5, 0.9}, {0.7, 0.8, 0.9}, {0.2, 0.3, 0.9}, {0.7, 0.6, 0.9}, {0.9, 0.95, 0.99}});
        std::vector<int> a{0, 0, 0, 0, 1};
        reseed_empty_clusters(a, t, std::vector<int>{2, 2, 2, 2, 2});
        QCOMPARE(a, (std::vector<int>{0, 2, 0, 0, 1}));
        // Only singletons: nothing can move.
        std::vector<int> s{0, 1};
        reseed_empty_clusters(s, totals_of({{0.1, 0.2, 0.3}, {0.1, 0.2, 0.3}}), std::vector<int>{1, 1});
        QCOMPARE(s, (std::vector<int>{0, 1}));
    }

    void bad_shapes_are_rejected() {
        const auto t = totals_of({{0.1, 0.2}});
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, reassign(std::vector<int>{2}, t, std::vector<int>{1}));
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, reassign(std::vector<int>{0, 1}, t, std::vector<int>{1, 1}));
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, reassign(std::vector<int>{0}, t, std::vector<int>{}));
    }

    void projector_distance_is_the_sine_of_the_largest_angle() {
        // A = [e1 e2 e3], B rotates e2 by 0.3 rad and e3 by 0.05 rad out of span(A), then a random
        // rotation of both (the distance is rotation-invariant).
        auto g = random_stream::derive(3, {1});
        const std::int64_t d = 40, r = 3;
        const matrix rot = random_orthonormal(d, d, g);
        matrix a(d, r), b(d, r);
        for (std::int64_t j = 0; j < r; ++j)
            a(j, j) = 1.0f;
        b(0, 0) = 1.0f;
        b(1, 1) = static_cast<float>(std::cos(0.3));
        b(10, 1) = static_cast<float>(std::sin(0.3));
        b(2, 2) = static_cast<float>(std::cos(0.05));
        b(11, 2) = static_cast<float>(std::sin(0.05));
        const matrix ra = gemm(op::n, rot, op::n, a), rb = gemm(op::n, rot, op::n, b);
        QVERIFY(std::abs(compress::detail::projector_distance(ra, rb) - std::sin(0.3)) < 1e-5);
        QVERIFY(std::abs(compress::detail::projector_distance(rb, ra) - std::sin(0.3)) < 1e-5);
        QVERIFY(compress::detail::projector_distance(ra, ra) < 1e-5);
        // A basis of the same span (columns mixed) is at distance 0; tiny angles are not lost.
        const matrix mix = random_orthonormal(r, r, g);
        QVERIFY(compress::detail::projector_distance(ra, gemm(op::n, ra, op::n, mix)) < 1e-5);
        matrix c = a;
        c(0, 0) = static_cast<float>(std::cos(1e-3));
        c(20, 0) = static_cast<float>(std::sin(1e-3));
        QVERIFY(std::abs(compress::detail::projector_distance(a, c) - 1e-3) < 1e-5);
    }

    void a_duplicated_adapter_joins_its_twin() {
        test::planted_fleet_options po;
        po.groups = 3;
        po.adapters_per_group = 4;
        po.noise = 0.05;
        po.seed = 4;
        auto fleet = test::make_planted_fleet(po);
        CpuBackend backend{cpu_backend_options{2}};
        for (const std::size_t twin : {std::size_t{0}, std::size_t{5}}) {
            TwinSource source(*fleet.source, twin);
            compress_options o;
            o.jd.rank = po.subspace_rank;
            o.clusters = po.groups;
            const auto r = compress_fleet(source, backend, o);
            QCOMPARE(r.assignment.back(), r.assignment[twin]);
            QVERIFY(std::abs(r.adapter_error.back() - r.adapter_error[twin]) < 1e-9);
            std::vector<int> planted = fleet.labels;
            planted.push_back(fleet.labels[twin]);
            QVERIFY(test::same_partition(r.assignment, planted));
        }
    }
};

QTEST_APPLESS_MAIN(TestFleetReassignment)
#include "test_fleet_reassignment.moc"
