// worker_pool (engine/serve/scheduling/worker_pool.hpp) under stress: pools of 2-8 threads run hundreds of
// thousands of tiny loops of 1-64 items, the size changing every loop. Each loop has its own function object
// that records (loop id, item) into that loop's own tally; after run() returns the tally must hold every item
// exactly once, and no item may ever be run by another loop's function or land in a loop that has
// already returned. Before the fix (worker_pool.cpp's header comment), a late worker could claim item
// n_old of the previous loop against the next loop's size: "ran 10 items of 9", a run() that never
// returned (caught by the watchdog: exit 1, not a hung CI) or a crash — within ~100k loops of a 2-thread
// pool. Also: exceptions from items reach the caller and the pool keeps working.
#include "engine/serve/scheduling/worker_pool.hpp"
#include "tests/support/watchdog.hpp"

#include <QtTest/QtTest>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <vector>

using namespace lorafleet::serve;
using lorafleet::test::stress_iterations;
using lorafleet::test::watchdog;

namespace {

// Runs `loops` loops on `pool`, n cycling through 1..max_items (every other cycle in a scrambled order);
// returns a description of the first violation, or "" when every loop ran each of its items exactly once.
// The per-loop work outside run() is kept tiny on purpose: the race needed the caller to start the next
// loop while a worker was still finishing the last one.
QString stress(worker_pool& pool, long loops, std::uint32_t max_items) {
    std::atomic<long> current{-1}; // the loop whose run() is in progress
    std::atomic<std::size_t> size{0};
    std::atomic<long> strays{0}; // items run while no loop, or another loop, was current
    std::vector<std::atomic<int>> tally(max_items + 1);
    long expected_loop = -1;
    const std::function<void(std::size_t, int)> fn = [&](std::size_t item, int worker) {
        if (current.load(std::memory_order_acquire) != expected_loop ||
            item >= size.load(std::memory_order_relaxed) || worker < 0 || worker >= pool.size()) {
            strays.fetch_add(1);
            return;
        }
        tally[item].fetch_add(1, std::memory_order_relaxed);
    };
    std::uint64_t state = 0x9e3779b97f4a7c15ull;
    for (long loop = 0; loop < loops; ++loop) {
        std::size_t n = 1 + std::size_t(loop % max_items);
        if ((loop / max_items) % 2 == 1) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            n = 1 + std::size_t((state >> 33) % max_items);
        }
        for (std::size_t i = 0; i < n; ++i)
            tally[i].store(0, std::memory_order_relaxed);
        expected_loop = loop; // read by fn only after run() has published the loop (release/acquire)
        size.store(n, std::memory_order_relaxed);
        current.store(loop, std::memory_order_release);
        pool.run(n, fn);
        current.store(-1, std::memory_order_release);
        for (std::size_t i = 0; i < n; ++i) {
            const int times = tally[i].load(std::memory_order_relaxed);
            if (times != 1)
                return QString("loop %1 (n=%2): item %3 ran %4 times").arg(loop).arg(n).arg(i).arg(times);
        }
        if (strays.load() != 0)
            return QString("loop %1: %2 items ran outside their loop").arg(loop).arg(strays.load());
    }
    return {};
}

} // namespace

class TestWorkerPool : public QObject {
    Q_OBJECT
private slots:
    void everyLoopRunsEachItemExactlyOnce_data() {
        QTest::addColumn<int>("threads");
        QTest::addColumn<int>("loops");
        QTest::addColumn<int>("max_items");
        // The 2-thread pool with small loops is where the late-worker race showed (65k-95k loops).
        QTest::newRow("2 threads, 1-9 items") << 2 << 3000000 << 9;
        QTest::newRow("2 threads, 1-64 items") << 2 << 500000 << 64;
        QTest::newRow("3 threads, 1-32 items") << 3 << 500000 << 32;
        QTest::newRow("4 threads, 1-16 items") << 4 << 300000 << 16;
        QTest::newRow("8 threads, 1-64 items") << 8 << 100000 << 64;
    }
    void everyLoopRunsEachItemExactlyOnce() {
        QFETCH(int, threads);
        QFETCH(int, loops);
        QFETCH(int, max_items);
        worker_pool pool(threads);
        QCOMPARE(pool.size(), threads);
        watchdog dog("worker_pool stress", std::chrono::seconds(90));
        const QString problem = stress(pool, stress_iterations(loops), std::uint32_t(max_items));
        QVERIFY2(problem.isEmpty(), qPrintable(problem));
    }

    // The caller really takes part and workers really run items: with 4 threads and items that wait for
    // each other, a loop of 4 items can only finish if 4 threads run at once.
    void allThreadsTakePart() {
        worker_pool pool(4);
        watchdog dog("worker_pool rendezvous", std::chrono::seconds(60));
        for (int round = 0; round < 20; ++round) {
            std::atomic<int> arrived{0};
            pool.run(4, [&](std::size_t, int) {
                arrived.fetch_add(1);
                while (arrived.load() < 4)
                    std::this_thread::yield();
            });
            QCOMPARE(arrived.load(), 4);
        }
    }

    void exceptionsReachTheCallerAndThePoolKeepsWorking() {
        worker_pool pool(3);
        watchdog dog("worker_pool exceptions", std::chrono::seconds(60));
        for (int round = 0; round < 2000; ++round) {
            std::atomic<int> ran{0};
            const std::size_t bad = std::size_t(round % 7);
            QVERIFY_THROWS_EXCEPTION(std::runtime_error, pool.run(7, [&](std::size_t i, int) {
                ran.fetch_add(1);
                if (i == bad) throw std::runtime_error("item failed");
            }));
            QCOMPARE(ran.load(), 7); // the loop drained: every item ran, none left behind
            std::atomic<int> after{0};
            pool.run(5, [&](std::size_t, int) { after.fetch_add(1); });
            QCOMPARE(after.load(), 5);
        }
    }
};

QTEST_GUILESS_MAIN(TestWorkerPool)
#include "test_worker_pool.moc"
