// The cluster map's projection (engine/analysis/cluster_map.hpp): the PCA against analytic principal axes
// (points on a line, two orthogonal directions, both the scatter and the Gram branch), bad shapes, and
// planted clusters compressed by the engine landing as separated groups on the map (centroid gaps larger
// than twice the largest spread).
#include "engine/analysis/cluster_map.hpp"
#include "engine/core/error.hpp"
#include "tests/support/planted_bank.hpp"
#include "tests/support/planted_fleet.hpp"

#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;

class TestClusterMap : public QObject {
    Q_OBJECT
private slots:
    // All variance along one known direction: axis 1 carries it all and reproduces the positions along
    // the line (up to a sign), axis 2 is zero.
    void pcaOfPointsOnALine() {
        const double dir[3] = {2.0 / 3, -1.0 / 3, 2.0 / 3}; // unit
        const double offset[3] = {5, -1, 0.5};
        const std::vector<double> t = {-3, -1, 0, 0.5, 2, 7};
        std::vector<double> f;
        for (double ti : t)
            for (int d = 0; d < 3; ++d)
                f.push_back(offset[d] + ti * dir[d]);
        const auto map = analysis::pca_2d(f, t.size(), 3);
        QVERIFY(std::abs(map.explained[0] - 1.0) < 1e-9);
        QVERIFY(std::abs(map.explained[1]) < 1e-9);
        double mean = 0;
        for (double ti : t)
            mean += ti / double(t.size());
        const double sign = map.x[0] * (t[0] - mean) > 0 ? 1 : -1;
        for (std::size_t i = 0; i < t.size(); ++i) {
            QVERIFY(std::abs(map.x[i] - sign * (t[i] - mean)) < 1e-9);
            QVERIFY(std::abs(map.y[i]) < 1e-9);
        }
    }

    // Points t_i a + s_i b + c with a ⊥ b unit, t ⊥ s centred, |t| > |s|: the covariance's eigenvectors
    // are a and b with eigenvalues |t|^2 and |s|^2, so the map is (±t, ±s). Checked in 3 dimensions
    // (n > dim: scatter matrix) and embedded in 12 (n < dim: Gram matrix).
    void pcaMatchesAnalyticAxes_data() {
        QTest::addColumn<int>("dim");
        QTest::newRow("scatter") << 3;
        QTest::newRow("gram") << 12;
    }
    void pcaMatchesAnalyticAxes() {
        QFETCH(int, dim);
        const std::vector<double> t = {2, -2, 2, -2, 0, 0};
        const std::vector<double> s = {1, 1, -1, -1, 0.5, -0.5};
        std::vector<double> a(std::size_t(dim), 0.0), b(std::size_t(dim), 0.0), c(std::size_t(dim), 0.0);
        a[0] = 0.6, a[1] = 0.8;  // unit
        b[0] = -0.8, b[1] = 0.6; // unit, ⊥ a
        for (int d = 0; d < dim; ++d)
            c[std::size_t(d)] = 0.1 * d - 1;
        std::vector<double> f;
        for (std::size_t i = 0; i < t.size(); ++i)
            for (int d = 0; d < dim; ++d)
                f.push_back(c[std::size_t(d)] + t[i] * a[std::size_t(d)] + s[i] * b[std::size_t(d)]);
        const auto map = analysis::pca_2d(f, t.size(), std::size_t(dim));
        double tt = 0, ss = 0;
        for (std::size_t i = 0; i < t.size(); ++i)
            tt += t[i] * t[i], ss += s[i] * s[i];
        QVERIFY(std::abs(map.explained[0] - tt / (tt + ss)) < 1e-9);
        QVERIFY(std::abs(map.explained[1] - ss / (tt + ss)) < 1e-9);
        const double sx = map.x[0] * t[0] > 0 ? 1 : -1;
        const double sy = map.y[0] * s[0] > 0 ? 1 : -1;
        for (std::size_t i = 0; i < t.size(); ++i) {
            QVERIFY2(std::abs(map.x[i] - sx * t[i]) < 1e-9, qPrintable(QString::number(map.x[i])));
            QVERIFY2(std::abs(map.y[i] - sy * s[i]) < 1e-9, qPrintable(QString::number(map.y[i])));
        }
        // Deterministic: the same input gives the same signs.
        const auto again = analysis::pca_2d(f, t.size(), std::size_t(dim));
        QCOMPARE(again.x, map.x);
        QCOMPARE(again.y, map.y);
    }

    void pcaRejectsBadShapes() {
        QVERIFY_THROWS_EXCEPTION(lorafleet::shape_mismatch, analysis::pca_2d({1, 2, 3}, 2, 2));
        const auto single = analysis::pca_2d({1, 2}, 1, 2); // one point: at the origin, no variance
        QCOMPARE(single.x, std::vector<double>{0.0});
        QCOMPARE(single.explained[0], 0.0);
    }

    // Three planted groups (own subspaces per module) compressed with k = 3: on the map the groups'
    // centroids are far apart compared with their spread, whatever the clusters' own bases.
    void plantedClustersAreSeparatedOnTheMap() {
        std::vector<int> labels;
        const auto bank = test::planted_bank(3, 8, 4, &labels);
        std::vector<int> clusters;
        for (const auto& a : bank.adapters)
            clusters.push_back(a.cluster);
        QVERIFY(test::same_partition(clusters, labels)); // precondition: the engine found the groups
        const auto map = analysis::compute_cluster_map(bank);
        QCOMPARE(map.x.size(), bank.adapters.size());
        QVERIFY(map.modules_used >= 1);
        double cx[3] = {0, 0, 0}, cy[3] = {0, 0, 0};
        int count[3] = {0, 0, 0};
        for (std::size_t i = 0; i < map.x.size(); ++i) {
            cx[clusters[i]] += map.x[i];
            cy[clusters[i]] += map.y[i];
            ++count[clusters[i]];
        }
        double spread = 0; // largest distance of a point from its cluster's centroid
        for (int c = 0; c < 3; ++c)
            cx[c] /= count[c], cy[c] /= count[c];
        for (std::size_t i = 0; i < map.x.size(); ++i)
            spread = std::max(spread, std::hypot(map.x[i] - cx[clusters[i]], map.y[i] - cy[clusters[i]]));
        double closest = 1e300;
        for (int c = 0; c < 3; ++c)
            for (int d = c + 1; d < 3; ++d)
                closest = std::min(closest, std::hypot(cx[c] - cx[d], cy[c] - cy[d]));
        qInfo("centroid gap %.4f, max spread %.4f, explained %.3f + %.3f", closest, spread, map.explained[0],
              map.explained[1]);
        QVERIFY2(closest > 2 * spread, qPrintable(QString("gap %1 spread %2").arg(closest).arg(spread)));
    }
};

QTEST_GUILESS_MAIN(TestClusterMap)
#include "test_cluster_map.moc"
