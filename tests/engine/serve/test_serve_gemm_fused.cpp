// gemm_nt with fused work (engine/serve/model/gemm.hpp, gemm_fused) on a two-thread worker_pool:
//  - every post(j0, j1) sees all pre items finished and its columns already equal to the plain product;
//    the column ranges tile [0, n) exactly once, start at multiples of 16, and the result equals the
//    plain gemm_nt followed by the same posts, bit for bit (shapes with edge blocks, m from 1 to 70);
//  - a pre item that throws: the exception reaches the caller and no block waits forever;
//  - without a pool (or with too little work to go parallel) the same results, serially.
#include "engine/serve/model/gemm.hpp"
#include "engine/serve/scheduling/worker_pool.hpp"

#include <QtTest/QtTest>

#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <vector>

using namespace lorafleet::serve;

namespace {

std::vector<float> random_values(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& f : v)
        f = u(rng);
    return v;
}

// The post used by the tests: y[i, j] = y[i, j] * 0.5 + marker[i] (the marker is what the pre items wrote).
void post_columns(float* y, int m, int n, const std::vector<float>& marker, int j0, int j1) {
    for (int i = 0; i < m; ++i)
        for (int j = j0; j < j1; ++j)
            y[std::size_t(i) * n + j] = y[std::size_t(i) * n + j] * 0.5f + marker[std::size_t(i)];
}

void check_shape(worker_pool* pool, int m, int n, int k) {
    const auto x = random_values(std::size_t(m) * k, 1000u + std::uint64_t(m));
    const auto w = random_values(std::size_t(n) * k, 2000u + std::uint64_t(n));
    std::vector<float> plain(std::size_t(m) * n), fused_y(std::size_t(m) * n, -7.0f);
    gemm_nt(m, n, k, 1.0f, x.data(), k, w.data(), k, plain.data(), n, false, nullptr);

    // Pre items: one per row, each writes that row's marker (x's row sum, so it depends on real input).
    std::vector<float> marker(std::size_t(m), 0.0f);
    std::atomic<int> pre_finished{0};
    std::vector<std::atomic<int>> covered(static_cast<std::size_t>(n));
    std::atomic<bool> ok{true};
    std::mutex msg_mutex;
    QString problem;
    auto fail = [&](const QString& what) {
        std::lock_guard lock(msg_mutex);
        if (problem.isEmpty()) problem = what;
        ok = false;
    };
    gemm_fused fused;
    fused.pre_items = std::size_t(m);
    fused.pre = [&](std::size_t item, int) {
        float s = 0.0f;
        for (int c = 0; c < k; ++c)
            s += x[item * std::size_t(k) + std::size_t(c)];
        marker[item] = s;
        pre_finished.fetch_add(1);
    };
    fused.post = [&](int j0, int j1, int) {
        if (pre_finished.load() != m)
            fail(QString("post [%1, %2) ran before every pre item").arg(j0).arg(j1));
        if (j0 % 16 != 0) fail(QString("post starts at %1").arg(j0));
        for (int i = 0; i < m; ++i)
            for (int j = j0; j < j1; ++j)
                if (std::memcmp(&fused_y[std::size_t(i) * n + j], &plain[std::size_t(i) * n + j],
                                sizeof(float)))
                    fail(QString("post [%1, %2): y[%3, %4] is not the final product yet")
                             .arg(j0)
                             .arg(j1)
                             .arg(i)
                             .arg(j));
        for (int j = j0; j < j1; ++j)
            covered[std::size_t(j)].fetch_add(1);
        post_columns(fused_y.data(), m, n, marker, j0, j1);
    };
    gemm_nt(m, n, k, 1.0f, x.data(), k, w.data(), k, fused_y.data(), n, false, pool, fused);
    QVERIFY2(ok, qPrintable(problem));
    for (int j = 0; j < n; ++j)
        QVERIFY2(covered[std::size_t(j)].load() == 1,
                 qPrintable(QString("column %1 posted %2 times").arg(j).arg(covered[std::size_t(j)].load())));

    std::vector<float> expected = plain;
    post_columns(expected.data(), m, n, marker, 0, n);
    QVERIFY(std::memcmp(expected.data(), fused_y.data(), expected.size() * sizeof(float)) == 0);
}

} // namespace

class TestServeGemmFused : public QObject {
    Q_OBJECT
private slots:
    void postsSeeFinalColumnsAndFinishedPreItems_data() {
        QTest::addColumn<int>("m");
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("k");
        for (int m : {1, 3, 64, 70})
            for (auto [n, k] : {std::pair{384, 128}, {128, 384}, {100, 37}, {7, 5}})
                QTest::addRow("m%d_n%d_k%d", m, n, k) << m << n << k;
    }
    void postsSeeFinalColumnsAndFinishedPreItems() {
        QFETCH(int, m);
        QFETCH(int, n);
        QFETCH(int, k);
        worker_pool pool(2);
        for (int repeat = 0; repeat < 20; ++repeat) { // thread interleavings differ from run to run
            check_shape(&pool, m, n, k);
            if (QTest::currentTestFailed()) return;
        }
        check_shape(nullptr, m, n, k);
    }

    void throwingPreItemReachesTheCaller() {
        worker_pool pool(2);
        const int m = 64, n = 384, k = 128;
        const auto x = random_values(std::size_t(m) * k, 5);
        const auto w = random_values(std::size_t(n) * k, 6);
        std::vector<float> y(std::size_t(m) * n);
        std::atomic<int> posts{0};
        gemm_fused fused;
        fused.pre_items = 3;
        fused.pre = [](std::size_t item, int) {
            if (item == 1) throw std::runtime_error("pre item 1 failed");
        };
        fused.post = [&](int j0, int j1, int) { posts.fetch_add(j1 - j0); };
        QVERIFY_THROWS_EXCEPTION(std::runtime_error, gemm_nt(m, n, k, 1.0f, x.data(), k, w.data(), k,
                                                             y.data(), n, false, &pool, fused));
        QCOMPARE(posts.load(), n); // every block still finished and posted (nothing hangs)
    }
};

QTEST_GUILESS_MAIN(TestServeGemmFused)
#include "test_serve_gemm_fused.moc"
