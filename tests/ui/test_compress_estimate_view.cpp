// The Compress tab before and around a run: the estimate box shows the bank size that the compression
// then produces (exact for a fixed cluster count), the peak memory and a time from the machine speed;
// a rank at or above the adapters' rank is flagged; a new workspace and the demo share one target-error
// default; Cancel clears the ETA and the current module.
#include "engine/analysis/compress_estimate.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/text_format.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/compress/compress_panel.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/workspace/demo_workspace.hpp"

#include <QLabel>
#include <QTemporaryDir>
#include <QtTest/QtTest>

using namespace lorafleet;

class TestCompressEstimateView : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_root;

private slots:
    void initTestCase() {
        test::isolateSettings();
        QLocale::setDefault(QLocale::c());
        QVERIFY(m_root.isValid());
        test::writeTinyFleet(m_root.filePath("fleet"), 8);
    }

    void estimateMatchesTheBankAndFlagsTheRank() {
        ui::Session session;
        session.importPaths({m_root.filePath("fleet")});
        QVERIFY(test::waitForImport(session));
        ui::CompressPanel panel(&session);
        ui::CompressSettings s = panel.settings();
        s.rank = 3;
        s.clusters = 2;
        s.device = "cpu";
        panel.setSettings(s);
        panel.setMachineSpeed(1e7); // of the chosen device (the panel measures it when shown otherwise)
        const auto e = analysis::estimate_compression(analysis::shape_of(session.store()->adapters()),
                                                      s.toOptions(), 1e7);
        QVERIFY(e.bank_bytes_exact);
        QVERIFY2(panel.estimateText().contains("Bank size</b>: " + ui::formatBytes(e.bank_bytes_max)),
                 qPrintable(panel.estimateText()));
        QVERIFY2(panel.estimateText().contains("Peak memory"), qPrintable(panel.estimateText()));
        QVERIFY2(
            panel.estimateText().contains("Time</b>: " + ui::formatDuration(qint64(e.seconds_min * 1000.0)) +
                                          " to " + ui::formatDuration(qint64(e.seconds_max * 1000.0))),
            qPrintable(panel.estimateText()));
        QVERIFY(panel.rankWarningText().isEmpty()); // rank 3 < the adapters' 4

        // The compression then makes a bank of exactly that size.
        QSignalSpy finished(session.compressor(), &ui::CompressController::finished);
        QVERIFY(session.compressor()->start(s));
        QVERIFY(finished.wait(240'000));
        QCOMPARE(session.bank()->stored_parameters() * 2, e.bank_bytes_max);

        s.rank = 4;
        panel.setSettings(s);
        QVERIFY2(panel.rankWarningText().contains("equals the adapters' own rank"),
                 qPrintable(panel.rankWarningText()));
        s.rank = 6;
        panel.setSettings(s);
        QVERIFY2(panel.rankWarningText().contains("above the adapters' own rank (4)"),
                 qPrintable(panel.rankWarningText()));
        panel.resize(1280, 800);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        const QString dir = qEnvironmentVariable("LORAFLEET_TEST_SHOTS");
        if (!dir.isEmpty()) QVERIFY(panel.grab().save(dir + "/compress_estimate.png"));
    }

    void oneTargetErrorDefault() {
        QCOMPARE(ui::DemoWorkspace::demoSettings().targetError, ui::CompressSettings().targetError);
        ui::Session session;
        ui::CompressPanel panel(&session);
        QCOMPARE(panel.settings().targetError, ui::CompressSettings().targetError);
    }

    // A long run (many clusters, high rank) cancelled once the ETA shows: the ETA and module lines go.
    void cancelClearsTheEta() {
        ui::Session session;
        session.importPaths({m_root.filePath("fleet")});
        QVERIFY(test::waitForImport(session));
        ui::CompressPanel panel(&session);
        panel.show();
        QVERIFY(QTest::qWaitForWindowExposed(&panel));
        ui::CompressSettings slow;
        slow.rank = 4;
        slow.clusters = 0; // automatic, unreachable target: many passes
        slow.targetError = 0.0001;
        slow.device = "cpu";
        QSignalSpy finished(session.compressor(), &ui::CompressController::finished);
        QSignalSpy progress(session.compressor(), &ui::CompressController::progressChanged);
        QVERIFY(session.compressor()->start(slow));
        QTRY_VERIFY_WITH_TIMEOUT(progress.count() > 0 || finished.count() > 0, 60'000);
        session.compressor()->cancel();
        if (finished.isEmpty()) QVERIFY(finished.wait(60'000));
        const auto labels = panel.findChildren<QLabel*>();
        for (QLabel* l : labels) {
            if (!l->isVisibleTo(&panel)) continue;
            QVERIFY2(!l->text().startsWith("ETA"), qPrintable(l->text()));
            QVERIFY2(!l->text().startsWith("Module:"), qPrintable(l->text()));
        }
    }
};

QTEST_MAIN(TestCompressEstimateView)
#include "test_compress_estimate_view.moc"
