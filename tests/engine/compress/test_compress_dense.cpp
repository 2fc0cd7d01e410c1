// Tests of the compression core's foundations: dense wrappers (shapes, values against naive loops),
// QR / eigen / Cholesky contracts, the deterministic RNG, the worker pool, module_batch validation and
// the backend registry. Expectations are computed independently (naive loops, closed forms).
#include "engine/backend/compress_backends.hpp"
#include "engine/compress/dense.hpp"
#include "engine/compress/module_batch.hpp"
#include "engine/compress/parallel.hpp"
#include "engine/compress/random_matrix.hpp"
#include "engine/core/error.hpp"

#include <QtTest/QtTest>

#include <memory>
#include <thread>

#include <atomic>
#include <cmath>

extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
}

using namespace lorafleet;
using namespace lorafleet::compress;
using namespace lorafleet::backend;

namespace {

double max_abs_diff(const matrix& a, const matrix& b) {
    double m = 0.0;
    for (std::size_t i = 0; i < a.data.size(); ++i)
        m = std::max(m, std::abs(static_cast<double>(a.data[i]) - b.data[i]));
    return m;
}

matrix naive_product(const matrix& a, bool ta, const matrix& b, bool tb) {
    const auto m = ta ? a.cols : a.rows, k = ta ? a.rows : a.cols, n = tb ? b.rows : b.cols;
    matrix c(m, n);
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
            double s = 0.0;
            for (std::int64_t l = 0; l < k; ++l)
                s += static_cast<double>(ta ? a(l, i) : a(i, l)) * (tb ? b(j, l) : b(l, j));
            c(i, j) = static_cast<float>(s);
        }
    return c;
}

double orthonormality_defect(const matrix& q) {
    double m = 0.0;
    for (std::int64_t i = 0; i < q.cols; ++i)
        for (std::int64_t j = 0; j < q.cols; ++j) {
            double s = 0.0;
            for (std::int64_t r = 0; r < q.rows; ++r)
                s += static_cast<double>(q(r, i)) * q(r, j);
            m = std::max(m, std::abs(s - (i == j ? 1.0 : 0.0)));
        }
    return m;
}

} // namespace

class TestCompressDense : public QObject {
    Q_OBJECT

private slots:
    void gemm_matches_naive_for_every_transpose() {
        random_stream g(3);
        const matrix a = gaussian_matrix(7, 5, g), at = transpose(a);
        const matrix b = gaussian_matrix(5, 4, g), bt = transpose(b);
        const matrix ref = naive_product(a, false, b, false);
        QVERIFY(max_abs_diff(gemm(op::n, a, op::n, b), ref) < 1e-5);
        QVERIFY(max_abs_diff(gemm(op::t, at, op::n, b), ref) < 1e-5);
        QVERIFY(max_abs_diff(gemm(op::n, a, op::t, bt), ref) < 1e-5);
        QVERIFY(max_abs_diff(gemm(op::t, at, op::t, bt), ref) < 1e-5);
        // alpha / beta accumulate
        matrix c = ref;
        gemm(op::n, a, op::n, b, c.mut(), 2.0f, -1.0f);
        QVERIFY(max_abs_diff(c, ref) < 1e-5);
    }

    void gemm_rejects_bad_shapes() {
        random_stream g(4);
        const matrix a = gaussian_matrix(3, 4, g), b = gaussian_matrix(5, 2, g);
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, gemm(op::n, a, op::n, b));
        matrix c(3, 3);
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, gemm(op::n, a, op::t, a, c.mut().block_cols(0, 2)));
    }

    void empty_inner_dimension_scales_c() {
        matrix a(3, 0), b(0, 2), c(3, 2);
        std::fill(c.data.begin(), c.data.end(), 5.0f);
        gemm(op::n, a, op::n, b, c.mut(), 1.0f, 0.0f);
        for (const float x : c.data)
            QCOMPARE(x, 0.0f);
    }

    void syrk_gives_full_symmetric_gram() {
        random_stream g(5);
        const matrix x = gaussian_matrix(9, 4, g);
        matrix c(4, 4);
        syrk(op::t, x, c.mut());
        QVERIFY(max_abs_diff(c, naive_product(x, true, x, false)) < 1e-5);
    }

    void qr_is_orthonormal_and_reproduces_a() {
        random_stream g(6);
        const matrix a = gaussian_matrix(20, 6, g);
        const auto [q, r] = qr(a);
        QVERIFY(orthonormality_defect(q) < 1e-5);
        QVERIFY(max_abs_diff(naive_product(q, false, r, false), a) < 1e-4);
        for (std::int64_t j = 0; j < r.cols; ++j)
            for (std::int64_t i = j + 1; i < r.rows; ++i)
                QCOMPARE(r(i, j), 0.0f);
    }

    void orthonormalize_handles_rank_deficiency() {
        random_stream g(7);
        matrix a = gaussian_matrix(12, 5, g);
        for (std::int64_t i = 0; i < a.rows; ++i) {
            a(i, 3) = a(i, 0); // duplicate column
            a(i, 4) = 0.0f;    // zero column
        }
        const matrix q = orthonormalize(a);
        QVERIFY(orthonormality_defect(q) < 1e-5);
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, orthonormalize(gaussian_matrix(3, 5, g)));
    }

    void top_eigenvectors_recovers_a_planted_spectrum() {
        random_stream g(8);
        const std::int64_t n = 10;
        const matrix q = random_orthonormal(n, n, g);
        matrix diag(n, n);
        for (std::int64_t i = 0; i < n; ++i)
            diag(i, i) = static_cast<float>(i + 1); // eigenvalues 1..10
        const matrix s = naive_product(naive_product(q, false, diag, false), false, q, true);
        const auto e = top_eigenvectors(s, 3);
        QCOMPARE(e.values.size(), std::size_t(3));
        for (int j = 0; j < 3; ++j) {
            QVERIFY(std::abs(e.values[static_cast<std::size_t>(j)] - static_cast<float>(n - j)) < 1e-4);
            double d = 0.0; // |<e_j, q_{n-1-j}>| = 1
            for (std::int64_t i = 0; i < n; ++i)
                d += static_cast<double>(e.vectors(i, j)) * q(i, n - 1 - j);
            QVERIFY(std::abs(std::abs(d) - 1.0) < 1e-4);
        }
        const auto ed = top_eigenvectors(to_double(s), 2);
        QVERIFY(std::abs(ed.values[0] - 10.0) < 1e-4);
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, top_eigenvectors(s, 11));
    }

    void cholesky_solves_and_reports_indefinite() {
        random_stream g(9);
        const matrix x = gaussian_matrix(8, 4, g);
        dmatrix gm = to_double(naive_product(x, true, x, false));
        for (std::int64_t i = 0; i < 4; ++i)
            gm(i, i) += 1.0;
        const dmatrix orig = gm;
        dmatrix rhs(4, 2);
        for (std::size_t i = 0; i < rhs.data.size(); ++i)
            rhs.data[i] = static_cast<double>(i) - 3.0;
        const dmatrix b = rhs;
        QVERIFY(cholesky_factor(gm));
        cholesky_solve(gm, rhs);
        const dmatrix back = gemm(op::n, orig.view(), op::n, rhs.view());
        for (std::size_t i = 0; i < b.data.size(); ++i)
            QVERIFY(std::abs(back.data[i] - b.data[i]) < 1e-10);
        dmatrix bad(2, 2);
        bad(0, 0) = 1.0;
        bad(1, 1) = -1.0;
        QVERIFY(!cholesky_factor(bad));
    }

    void subspace_change_measures_rotation_out_of_span() {
        random_stream g(10);
        const matrix q = random_orthonormal(10, 4, g);
        // Same span, different basis: change 0.
        const matrix rot = random_orthonormal(4, 4, g);
        QVERIFY(subspace_change(q, gemm(op::n, q, op::n, rot)) < 1e-5);
        // Orthogonal complement: change 1.
        const matrix full = random_orthonormal(10, 8, g);
        matrix a(10, 4), b(10, 4);
        std::copy(full.data.begin(), full.data.begin() + 40, a.data.begin());
        std::copy(full.data.begin() + 40, full.data.end(), b.data.begin());
        QVERIFY(std::abs(subspace_change(a, b) - 1.0) < 1e-5);
    }

    void rng_is_deterministic_and_roughly_normal() {
        // The one generator (engine/core/random.hpp) as the compression core seeds it: by seed, and by
        // derived streams for independent draws under one seed.
        random_stream a(42), b(42), c(43);
        auto s1 = random_stream::derive(42, {1});
        bool differ = false, stream_differ = false;
        for (int i = 0; i < 100; ++i) {
            const auto x = a.next_u64();
            QCOMPARE(x, b.next_u64());
            differ = differ || x != c.next_u64();
            stream_differ = stream_differ || x != s1.next_u64();
        }
        QVERIFY(differ);
        QVERIFY(stream_differ);
        random_stream n(1);
        double sum = 0.0, sum2 = 0.0;
        const int count = 200000;
        for (int i = 0; i < count; ++i) {
            const double x = n.normal();
            sum += x;
            sum2 += x * x;
        }
        QVERIFY(std::abs(sum / count) < 0.01);
        QVERIFY(std::abs(sum2 / count - 1.0) < 0.02);
        for (int i = 0; i < 1000; ++i)
            QVERIFY(n.below(7) < 7);
    }

    void thread_pool_covers_every_index_once_and_propagates_errors() {
        thread_pool pool(3);
        std::vector<std::atomic<int>> hits(101);
        std::atomic<bool> bad_thread{false};
        pool.parallel_for(hits.size(), [&](std::size_t b, std::size_t e, int t) {
            if (t < 0 || t >= 3) bad_thread = true;
            for (std::size_t i = b; i < e; ++i)
                ++hits[i];
        });
        QVERIFY(!bad_thread);
        for (const auto& h : hits)
            QCOMPARE(h.load(), 1);
        QVERIFY_THROWS_EXCEPTION(usage_error, pool.parallel_for(10, [](std::size_t b, std::size_t, int) {
            if (b >= 5) throw usage_error("x", "boom");
        }));
        // Still usable after an exception.
        std::atomic<int> total{0};
        pool.parallel_for(10, [&](std::size_t b, std::size_t e, int) { total += static_cast<int>(e - b); });
        QCOMPARE(total.load(), 10);
    }

    void blas_guards_overlapping_across_threads_keep_one_thread_until_the_last_ends() {
        openblas_set_num_threads(2);
        if (openblas_get_num_threads() != 2) QSKIP("this OpenBLAS runs single-threaded");
        // Two overlapping guards that do not nest (A starts, B starts on another thread, A ends, B ends):
        // while B is alive the count must stay 1, and only B's end restores 2.
        auto a = std::make_unique<blas_threads_guard>(1);
        std::unique_ptr<blas_threads_guard> b;
        std::thread([&] { b = std::make_unique<blas_threads_guard>(1); }).join();
        QCOMPARE(openblas_get_num_threads(), 1);
        a.reset();
        QCOMPARE(openblas_get_num_threads(), 1);
        std::thread([&] { b.reset(); }).join();
        QCOMPARE(openblas_get_num_threads(), 2);
    }

    void module_batch_validates_sizes() {
        random_stream g(11);
        std::vector<owned_factors> f(1);
        f[0].adapter = 0;
        f[0].rank = 2;
        f[0].a.assign(2 * 5, 1.0f);
        f[0].b.assign(3 * 2, 1.0f);
        const module_batch ok = make_owned_module_batch("m", 3, 5, f);
        QCOMPARE(ok.a_t(0).rows, std::int64_t(5));
        QCOMPARE(ok.b_t(0).cols, std::int64_t(3));
        f[0].a.pop_back();
        QVERIFY_THROWS_EXCEPTION(shape_mismatch, make_owned_module_batch("m", 3, 5, f));
    }

    void registry_picks_cpu_and_refuses_cuda_without_a_device() {
        QCOMPARE(make_compress_backend("cpu", 1)->name(), std::string("cpu"));
        QVERIFY_THROWS_EXCEPTION(usage_error, make_compress_backend("tpu"));
        if (cuda_backend_usable()) QSKIP("a CUDA device is usable: the gpu tests cover the cuda choice");
        QCOMPARE(make_compress_backend("auto", 1)->name(), std::string("cpu"));
        QVERIFY_THROWS_EXCEPTION(backend_unavailable, make_compress_backend("cuda"));
    }
};

QTEST_APPLESS_MAIN(TestCompressDense)
#include "test_compress_dense.moc"
