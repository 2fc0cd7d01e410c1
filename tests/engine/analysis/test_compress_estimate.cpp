// The compression estimate (engine/analysis/compress_estimate.hpp) against real compressions of a
// synthetic PEFT fleet: the predicted bank size equals the bank's stored F16 values for fixed cluster
// counts and both methods, an automatic count's range holds the bank it produced, the rank flags at and
// above the adapters' rank, the pass counts per mode, and a measured machine speed that gives a positive,
// finite time.
#include "engine/analysis/compress_estimate.hpp"
#include "engine/backend/compress_backends.hpp"
#include "engine/bank/fleet_bank.hpp"
#include "engine/io/fleet.hpp"
#include "engine/synth/synthetic_fleet.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <chrono>
#include <cmath>

using namespace lorafleet;

class TestCompressEstimate : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_dir;
    io::fleet m_fleet;

private slots:
    void initTestCase() {
        QVERIFY(m_dir.isValid());
        synth::synth_options o;
        o.out_dir = m_dir.path().toStdString();
        o.adapters = 10;
        o.geometry = *io::geometry_preset("tinystories-656k");
        o.modules = {"q_proj", "v_proj"};
        o.rank = 4;
        o.clusters = 2;
        o.dtype = io::dtype::F32;
        o.threads = 1;
        synth::write_synthetic_fleet(o);
        for (int i = 0; i < o.adapters; ++i)
            m_fleet.push_back(std::make_shared<const io::peft_adapter>(
                io::load_peft_adapter(o.out_dir / synth::adapter_folder_name(i, o.adapters))));
    }

    void shapeOfTheFleet() {
        const auto s = analysis::shape_of(m_fleet);
        QCOMPARE(s.adapters, std::size_t(10));
        QCOMPARE(s.max_source_rank, 4);
        QVERIFY(s.complete);
        QCOMPARE(int(s.modules.size()), int(m_fleet.front()->modules.size()));
        for (const auto& m : s.modules)
            QCOMPARE(m.adapters, std::size_t(10));
    }

    void bankSizeIsExact_data() {
        QTest::addColumn<bool>("full");
        QTest::addColumn<int>("clusters");
        QTest::addColumn<int>("rank");
        QTest::newRow("full k=1 r=2") << true << 1 << 2;
        QTest::newRow("full k=3 r=4") << true << 3 << 4;
        QTest::newRow("diag k=2 r=3") << false << 2 << 3;
    }
    void bankSizeIsExact() {
        QFETCH(bool, full);
        QFETCH(int, clusters);
        QFETCH(int, rank);
        compress::compress_options o;
        o.jd.method = full ? compress::jd_method::full : compress::jd_method::diag;
        o.jd.rank = rank;
        o.clusters = clusters;
        o.max_cluster_iterations = 2;
        const auto e = analysis::estimate_compression(analysis::shape_of(m_fleet), o, 0);
        QVERIFY(e.bank_bytes_exact);
        QCOMPARE(e.bank_bytes_min, e.bank_bytes_max);
        auto backend = backend::make_compress_backend("cpu", 1);
        const auto fb = bank::compress_adapters_to_bank(m_fleet, *backend, o, std::nullopt, 1);
        QCOMPARE(e.bank_bytes_min, fb.bank.stored_parameters() * 2);
        QVERIFY(e.peak_bytes > e.bank_bytes_max); // float32 and twice, plus the module batches
        QCOMPARE(e.seconds_min, -1.0);            // no machine speed given
    }

    void automaticCountRangeHoldsTheBank() {
        compress::compress_options o;
        o.jd.rank = 2;
        o.clusters = 0;
        o.target_error = 0.05;
        o.max_clusters = 4;
        o.max_cluster_iterations = 2;
        const auto e = analysis::estimate_compression(analysis::shape_of(m_fleet), o, 0);
        QVERIFY(!e.bank_bytes_exact);
        QVERIFY(e.bank_bytes_min < e.bank_bytes_max);
        auto backend = backend::make_compress_backend("cpu", 1);
        const auto fb = bank::compress_adapters_to_bank(m_fleet, *backend, o, std::nullopt, 1);
        const auto bytes = fb.bank.stored_parameters() * 2;
        QVERIFY(bytes >= e.bank_bytes_min && bytes <= e.bank_bytes_max);
        QCOMPARE(e.min_passes, 1);
        QVERIFY(e.max_passes > 4);
    }

    void rankFlagsAndPasses() {
        const auto shape = analysis::shape_of(m_fleet);
        compress::compress_options o;
        o.clusters = 1;
        o.jd.rank = 3;
        auto e = analysis::estimate_compression(shape, o, 0);
        QVERIFY(!e.rank_at_least_source && !e.rank_above_source);
        QCOMPARE(e.min_passes, 1);
        QCOMPARE(e.max_passes, 1);
        o.jd.rank = 4;
        e = analysis::estimate_compression(shape, o, 0);
        QVERIFY(e.rank_at_least_source && !e.rank_above_source);
        o.jd.rank = 5;
        o.clusters = 3;
        o.max_cluster_iterations = 5;
        e = analysis::estimate_compression(shape, o, 0);
        QVERIFY(e.rank_at_least_source && e.rank_above_source);
        QCOMPARE(e.min_passes, 2);
        QCOMPARE(e.max_passes, 7);
    }

    // On a fleet big enough that the fit, not fixed per-call costs, takes the time (96 adapters, four
    // modules per layer, rank 8): the estimate is within 20x of the run either way (loose: a shared,
    // loaded machine).
    void measuredSpeedGivesATime() {
        auto backend = backend::make_compress_backend("cpu", 1);
        const double speed = analysis::measure_machine_speed(*backend);
        QVERIFY(std::isfinite(speed) && speed > 0);
        QTemporaryDir dir;
        synth::synth_options so;
        so.out_dir = dir.path().toStdString();
        so.adapters = 96;
        so.geometry = *io::geometry_preset("tinystories-656k");
        so.modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
        so.rank = 8;
        so.clusters = 1;
        so.dtype = io::dtype::F32;
        so.threads = 1;
        synth::write_synthetic_fleet(so);
        io::fleet fleet;
        for (int i = 0; i < so.adapters; ++i)
            fleet.push_back(std::make_shared<const io::peft_adapter>(
                io::load_peft_adapter(so.out_dir / synth::adapter_folder_name(i, so.adapters))));
        compress::compress_options o;
        o.jd.rank = 8;
        o.clusters = 1;
        const auto e = analysis::estimate_compression(analysis::shape_of(fleet), o, speed);
        QVERIFY(e.seconds_min > 0 && std::isfinite(e.seconds_min));
        QCOMPARE(e.seconds_min, e.seconds_max);
        const auto t0 = std::chrono::steady_clock::now();
        bank::compress_adapters_to_bank(fleet, *backend, o, std::nullopt, 1);
        const double actual = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        qInfo("speed %.3g units/s; estimate %.4f s for one pass, measured %.4f s", speed, e.seconds_min,
              actual);
        QVERIFY2(e.seconds_min < 20 * actual && actual < 20 * e.seconds_min,
                 qPrintable(QString("estimate %1 s, actual %2 s").arg(e.seconds_min).arg(actual)));
    }
};

QTEST_GUILESS_MAIN(TestCompressEstimate)
#include "test_compress_estimate.moc"
