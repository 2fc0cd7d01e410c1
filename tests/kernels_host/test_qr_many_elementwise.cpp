// The element logic of kernels::qr_thin_many's R extraction (upper_triangle_entry, run here in the
// kernel's own loop over a geqrf output with a padded leading dimension) gives exactly the R of the
// host's Householder QR (LAPACK sgeqrf + sorgqr in compress::qr), zeros below the diagonal included.
#include "engine/compress/dense.hpp"
#include "kernels/linalg_batched_elementwise.hpp"

#include <QTest>

#include <lapacke.h>

#include <random>
#include <vector>

using namespace lorafleet;
using lorafleet::kernels::upper_triangle_entry;

class TestQrManyElementwise : public QObject {
    Q_OBJECT

private slots:
    void upperTriangleOfGeqrfIsHostR() {
        std::mt19937 rng(5);
        std::normal_distribution<float> g;
        for (auto [m, n] : {std::pair<int, int>{9, 4}, {6, 6}, {17, 1}}) {
            compress::matrix a(m, n);
            for (auto& x : a.data)
                x = g(rng);
            const auto want = compress::qr(a).second; // R [n, n]
            // geqrf in place with a padded leading dimension, like a packed device matrix.
            const int lda = m + 3;
            std::vector<float> packed(static_cast<std::size_t>(lda * n), 99.0f),
                tau(static_cast<std::size_t>(n));
            for (int j = 0; j < n; ++j)
                for (int i = 0; i < m; ++i)
                    packed[static_cast<std::size_t>(i + j * lda)] = a(i, j);
            QCOMPARE(LAPACKE_sgeqrf(LAPACK_COL_MAJOR, m, n, packed.data(), lda, tau.data()), 0);
            std::vector<float> r(static_cast<std::size_t>(n * n), -1.0f);
            for (std::int64_t idx = 0; idx < std::int64_t(n) * n; ++idx) { // the kernel's loop
                const std::int64_t i = idx % n, j = idx / n;
                r[static_cast<std::size_t>(idx)] =
                    upper_triangle_entry(i, j, packed[static_cast<std::size_t>(i + j * lda)]);
            }
            for (int j = 0; j < n; ++j)
                for (int i = 0; i < n; ++i) {
                    const float got = r[static_cast<std::size_t>(i + j * n)];
                    QCOMPARE(got, want(i, j));
                    if (i > j) QCOMPARE(got, 0.0f);
                }
        }
    }
};

QTEST_GUILESS_MAIN(TestQrManyElementwise)
#include "test_qr_many_elementwise.moc"
