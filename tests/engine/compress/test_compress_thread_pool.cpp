// compress::thread_pool (engine/compress/parallel.hpp) under stress: pools of 2-6 threads run tens of
// thousands of parallel_for loops whose size changes every loop. Each index of each loop must be covered
// exactly once, by the static chunk the header promises (chunk t = [n*t/size, n*(t+1)/size)), and
// parallel_for must return only after every chunk ended (a missed or doubled wake-up would hang, caught by
// the watchdog, or let a chunk run after its loop returned, caught by the loop id check). Exceptions from
// any chunk reach the caller, first by chunk order, and the pool keeps working.
#include "engine/compress/parallel.hpp"
#include "tests/support/watchdog.hpp"

#include <QtTest/QtTest>

#include <atomic>
#include <stdexcept>
#include <vector>

using lorafleet::compress::thread_pool;
using lorafleet::test::stress_iterations;
using lorafleet::test::watchdog;

class TestCompressThreadPool : public QObject {
    Q_OBJECT
private slots:
    void staticChunksCoverEachIndexOnce_data() {
        QTest::addColumn<int>("threads");
        QTest::addColumn<int>("loops");
        QTest::newRow("2 threads") << 2 << 100000;
        QTest::newRow("3 threads") << 3 << 60000;
        QTest::newRow("6 threads") << 6 << 20000;
    }
    void staticChunksCoverEachIndexOnce() {
        QFETCH(int, threads);
        QFETCH(int, loops);
        thread_pool pool(threads);
        watchdog dog("compress thread_pool stress", std::chrono::seconds(90));
        std::vector<std::atomic<int>> tally(40);
        std::atomic<long> current{-1}, strays{0};
        long expected = -1;
        std::size_t size = 0;
        const std::function<void(std::size_t, std::size_t, int)> fn = [&](std::size_t b, std::size_t e,
                                                                          int t) {
            // A loop of one index runs inline as chunk 0 = [0, 1).
            const std::size_t p = size == 1 ? 1 : std::size_t(pool.size()), ti = std::size_t(t);
            if (current.load(std::memory_order_acquire) != expected || b != size * ti / p ||
                e != size * (ti + 1) / p) {
                strays.fetch_add(1);
                return;
            }
            for (std::size_t i = b; i < e; ++i)
                tally[i].fetch_add(1, std::memory_order_relaxed);
        };
        const long n_loops = stress_iterations(loops);
        for (long loop = 0; loop < n_loops; ++loop) {
            size = 1 + std::size_t(loop * 7 % 40);
            for (std::size_t i = 0; i < size; ++i)
                tally[i].store(0, std::memory_order_relaxed);
            expected = loop;
            current.store(loop, std::memory_order_release);
            pool.parallel_for(size, fn); // default flops: always parallel when size > 1
            current.store(-1, std::memory_order_release);
            for (std::size_t i = 0; i < size; ++i)
                QVERIFY2(
                    tally[i].load() == 1,
                    qPrintable(
                        QString("loop %1: index %2 covered %3 times").arg(loop).arg(i).arg(tally[i].load())));
            QVERIFY2(strays.load() == 0, qPrintable(QString("loop %1: a chunk ran outside its loop or "
                                                            "with the wrong bounds")
                                                        .arg(loop)));
        }
    }

    void firstErrorByChunkOrderReachesTheCaller() {
        thread_pool pool(4);
        watchdog dog("compress thread_pool errors", std::chrono::seconds(60));
        for (int round = 0; round < 500; ++round) {
            try {
                pool.parallel_for(8, [&](std::size_t b, std::size_t, int t) {
                    if (t >= 1)
                        throw std::runtime_error("chunk " + std::to_string(t) + " at " + std::to_string(b));
                });
                QFAIL("no exception");
            } catch (const std::runtime_error& e) {
                QCOMPARE(QString(e.what()), QString("chunk 1 at 2"));
            }
            std::atomic<int> covered{0};
            pool.parallel_for(8, [&](std::size_t b, std::size_t e, int) { covered.fetch_add(int(e - b)); });
            QCOMPARE(covered.load(), 8);
        }
    }
};

QTEST_GUILESS_MAIN(TestCompressThreadPool)
#include "test_compress_thread_pool.moc"
