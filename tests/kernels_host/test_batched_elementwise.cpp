// The __host__ __device__ element logic of the batched linear-algebra kernels
// (kernels/linalg_batched_elementwise.hpp), run on the CPU the way the kernels loop over it: the
// identity-shift padding of a batched eigenproblem (checked against a dense symmetric eigensolver here:
// the padding's eigenpairs sort first and leave the used block's eigenpairs unchanged), the top-k
// descending column extraction from batched syev output against an explicit reversal, and the column
// gather against plain indexing.
#include "kernels/linalg_batched_elementwise.hpp"

#include <QtTest/QtTest>

#include <algorithm>
#include <cmath>
#include <vector>

using namespace lorafleet::kernels;

namespace {

// Cyclic Jacobi eigen-solver for a small symmetric matrix (column-major [n, n]): eigenvalues ascending,
// eigenvectors in the columns of `v`. An independent reference for the padding check.
void jacobi(std::vector<double> a, int n, std::vector<double>& w, std::vector<double>& v) {
    v.assign(static_cast<std::size_t>(n * n), 0.0);
    for (int i = 0; i < n; ++i)
        v[static_cast<std::size_t>(i * n + i)] = 1.0;
    auto at = [&](std::vector<double>& m, int i, int j) -> double& {
        return m[static_cast<std::size_t>(j * n + i)];
    };
    for (int sweep = 0; sweep < 100; ++sweep) {
        double off = 0.0;
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < n; ++i)
                if (i != j) off += at(a, i, j) * at(a, i, j);
        if (off < 1e-26) break;
        for (int p = 0; p < n; ++p)
            for (int q = p + 1; q < n; ++q) {
                if (std::abs(at(a, p, q)) < 1e-300) continue;
                const double theta = (at(a, q, q) - at(a, p, p)) / (2.0 * at(a, p, q));
                const double t =
                    (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1.0));
                const double c = 1.0 / std::sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < n; ++k) {
                    const double akp = at(a, k, p), akq = at(a, k, q);
                    at(a, k, p) = c * akp - s * akq;
                    at(a, k, q) = s * akp + c * akq;
                }
                for (int k = 0; k < n; ++k) {
                    const double apk = at(a, p, k), aqk = at(a, q, k);
                    at(a, p, k) = c * apk - s * aqk;
                    at(a, q, k) = s * apk + c * aqk;
                }
                for (int k = 0; k < n; ++k) {
                    const double vkp = at(v, k, p), vkq = at(v, k, q);
                    at(v, k, p) = c * vkp - s * vkq;
                    at(v, k, q) = s * vkp + c * vkq;
                }
            }
    }
    std::vector<int> order(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        order[static_cast<std::size_t>(i)] = i;
    std::sort(order.begin(), order.end(), [&](int x, int y) { return at(a, x, x) < at(a, y, y); });
    std::vector<double> vs(v.size());
    w.resize(static_cast<std::size_t>(n));
    for (int j = 0; j < n; ++j) {
        const int from = order[static_cast<std::size_t>(j)];
        w[static_cast<std::size_t>(j)] = at(a, from, from);
        for (int i = 0; i < n; ++i)
            vs[static_cast<std::size_t>(j * n + i)] = v[static_cast<std::size_t>(from * n + i)];
    }
    v = vs;
}

} // namespace

class TestBatchedElementwise : public QObject {
    Q_OBJECT

private slots:
    // A PSD Gram of size 3 padded to 5 with pad = -1: the padded matrix's eigenvalues are -1, -1 (the
    // padding, first in ascending order) and the Gram's own; the top eigenvectors are the Gram's, zero in
    // the padding rows.
    void paddingSortsFirstAndDoesNotMix() {
        const int used = 3, n = 5;
        const double x[used * 2] = {1.0, 2.0, -0.5, 0.3, -1.0, 2.5}; // X [3, 2] -> G = X X^T is PSD, rank 2
        std::vector<double> g(static_cast<std::size_t>(used * used)), a(static_cast<std::size_t>(n * n), 0.0);
        for (int i = 0; i < used; ++i)
            for (int j = 0; j < used; ++j) {
                double s = 0.0;
                for (int k = 0; k < 2; ++k)
                    s += x[k * used + i] * x[k * used + j];
                g[static_cast<std::size_t>(j * used + i)] = s;
                a[static_cast<std::size_t>(j * n + i)] = s;
            }
        for (int i = 0; i < n; ++i) // the kernel's loop
            a[static_cast<std::size_t>(i * n + i)] =
                padded_diagonal(i, used, a[static_cast<std::size_t>(i * n + i)], -1.0);
        std::vector<double> wp, vp, wg, vg;
        jacobi(a, n, wp, vp);
        jacobi(g, used, wg, vg);
        QVERIFY(std::abs(wp[0] + 1.0) < 1e-12 && std::abs(wp[1] + 1.0) < 1e-12);
        for (int j = 0; j < used; ++j)
            QVERIFY2(std::abs(wp[static_cast<std::size_t>(2 + j)] - wg[static_cast<std::size_t>(j)]) < 1e-10,
                     "the used block's eigenvalues changed");
        // The top eigenvector (largest eigenvalue, simple) agrees up to sign and is zero in the padding.
        double dotp = 0.0;
        for (int i = 0; i < used; ++i)
            dotp += vp[static_cast<std::size_t>((n - 1) * n + i)] *
                    vg[static_cast<std::size_t>((used - 1) * used + i)];
        QVERIFY(std::abs(std::abs(dotp) - 1.0) < 1e-10);
        for (int i = used; i < n; ++i)
            QVERIFY(std::abs(vp[static_cast<std::size_t>((n - 1) * n + i)]) < 1e-12);
        // Inside the block the diagonal is kept.
        QCOMPARE(padded_diagonal(1, 3, 7.5, -1.0), 7.5);
        QCOMPARE(padded_diagonal(3, 3, 7.5, -1.0), -1.0);
    }

    // take_top_columns_f64's loop over a packed batch of two "eigenvector" matrices of size n = 4 with
    // used sizes 4 and 2 and k = 3 and 1: E_j column c is column n - 1 - c of matrix j, rows < rows_j.
    void topColumnsAreReversedAndPacked() {
        const std::int64_t n = 4, batch = 2;
        std::vector<double> vecs(static_cast<std::size_t>(n * n * batch));
        for (std::size_t i = 0; i < vecs.size(); ++i)
            vecs[i] = static_cast<double>(i) + 0.25;
        const std::int64_t rows[2] = {4, 2}, k[2] = {3, 1}, off[2] = {0, 12};
        const std::int64_t max_rows = 4, max_k = 3;
        std::vector<double> dst(14, -7.0);
        for (std::int64_t idx = 0; idx < max_rows * max_k * batch; ++idx) { // the kernel's loop
            const std::int64_t per = max_rows * max_k, j = idx / per, rest = idx % per, row = rest % max_rows,
                               c = rest / max_rows;
            const std::int64_t from = top_column_source(j, row, c, n, rows[j], k[j]);
            if (from >= 0)
                dst[static_cast<std::size_t>(top_column_dest(row, c, rows[j], off[j]))] =
                    vecs[static_cast<std::size_t>(from)];
        }
        for (std::int64_t j = 0; j < batch; ++j)
            for (std::int64_t c = 0; c < k[j]; ++c)
                for (std::int64_t r = 0; r < rows[j]; ++r) {
                    const double want = vecs[static_cast<std::size_t>(j * n * n + (n - 1 - c) * n + r)];
                    QCOMPARE(dst[static_cast<std::size_t>(off[j] + c * rows[j] + r)], want);
                }
        QCOMPARE(top_column_source(0, 4, 0, n, 4, 3), std::int64_t(-1));
        QCOMPARE(top_column_source(1, 0, 1, n, 2, 1), std::int64_t(-1));
    }

    void gatherPicksColumns() {
        const std::int64_t d = 3, cols = 4;
        std::vector<float> src(static_cast<std::size_t>(d * 6));
        for (std::size_t i = 0; i < src.size(); ++i)
            src[i] = static_cast<float>(i);
        const std::int64_t index[cols] = {5, 0, 2, 2};
        std::vector<float> dst(static_cast<std::size_t>(d * cols));
        for (std::int64_t idx = 0; idx < d * cols; ++idx) // the kernel's loop
            dst[static_cast<std::size_t>(idx)] =
                src[static_cast<std::size_t>(gathered_column_source(idx % d, index[idx / d], d))];
        for (std::int64_t c = 0; c < cols; ++c)
            for (std::int64_t r = 0; r < d; ++r)
                QCOMPARE(dst[static_cast<std::size_t>(c * d + r)],
                         src[static_cast<std::size_t>(index[c] * d + r)]);
    }
};

QTEST_GUILESS_MAIN(TestBatchedElementwise)
#include "test_batched_elementwise.moc"
