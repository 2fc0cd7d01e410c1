// The console's shared formats and progress texts: formatError (3 significant digits as a fraction,
// scientific below 1e-4, carry into the next decade), formatBytes (IEC, the one size function), the
// EtaSmoother (no jumps like 7.1 -> 10.1 -> 5.2 s on a jittery rate; converges to the true remaining
// time on a steady one) and the status bar's progress text ("437 of 1,000 adapters" or a percentage).
#include "tests/ui/ui_test_support.hpp"
#include "ui/common/eta_smoother.hpp"
#include "ui/common/text_format.hpp"
#include "ui/main/main_status_bar.hpp"

#include <QLocale>
#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;

class TestTextFormat : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        test::isolateSettings();
        QLocale::setDefault(QLocale(QLocale::English, QLocale::UnitedStates)); // "1,000"
    }

    void errorsHaveThreeSignificantDigits() {
        QCOMPARE(ui::formatError(0.00347), QString("0.00347"));
        QCOMPARE(ui::formatError(0.003469), QString("0.00347"));
        QCOMPARE(ui::formatError(0.4), QString("0.400"));
        QCOMPARE(ui::formatError(0.0412), QString("0.0412"));
        QCOMPARE(ui::formatError(1.234), QString("1.23"));
        QCOMPARE(ui::formatError(0.0099996), QString("0.0100")); // rounding carries into the next decade
        QCOMPARE(ui::formatError(0.00012), QString("0.000120"));
        QCOMPARE(ui::formatError(3.47e-13), QString("3.47e-13"));
        QCOMPARE(ui::formatError(0.0), QString("0"));
        QCOMPARE(ui::formatError(std::nan("")), QString("n/a"));
        // Near-equal errors stay distinguishable (every heat-map cell used to read "0.004").
        QVERIFY(ui::formatError(0.00412) != ui::formatError(0.00398));
    }

    void sizesAreIec() {
        QCOMPARE(ui::formatBytes(0), QString("0 B"));
        QCOMPARE(ui::formatBytes(812), QString("812 B"));
        QCOMPARE(ui::formatBytes(5767168), QString("5.5 MiB")); // 5.5 * 1048576
        QCOMPARE(ui::formatBytes(1536), QString("1.5 KiB"));
    }

    // A job whose true rate alternates between 0.5x and 2x every second (a big module, then small ones),
    // and one that triples its speed half way: after the warm-up the smoothed ETA never rises by more
    // than 20% in a one-second update, nor falls by more than 30% beyond the second that passed, while a
    // naive "remaining / last second's rate" jumps by 4x.
    void etaIsSmooth_data() {
        QTest::addColumn<bool>("alternating");
        QTest::newRow("alternating") << true;
        QTest::newRow("speed-up") << false;
    }
    void etaIsSmooth() {
        QFETCH(bool, alternating);
        ui::EtaSmoother eta;
        double f = 0, t = 0, previous = -1, naivePrevious = -1;
        double worstUp = 0, worstDown = 0, naiveWorst = 0;
        int updates = 0;
        for (int step = 0; step < 60; ++step) {
            const double rate = alternating ? (step % 2 == 0 ? 0.5 : 2.0) * 0.02 : (step < 10 ? 0.01 : 0.03);
            for (int k = 0; k < 4; ++k) { // 4 samples a second
                t += 0.25;
                f = std::min(1.0, f + rate * 0.25);
                eta.add(t, f);
            }
            if (f >= 0.98) break;
            const double naive = (1 - f) / rate;
            if (naivePrevious > 0) naiveWorst = std::max(naiveWorst, std::abs(naive / naivePrevious - 1));
            naivePrevious = naive;
            const double e = eta.eta();
            QVERIFY(e > 0);
            if (step >= 3 && previous > 0) {
                worstUp = std::max(worstUp, e / previous - 1);
                worstDown = std::max(worstDown, (previous - 1 - e) / previous);
                ++updates;
            }
            previous = e;
        }
        qInfo("worst rise %.2f, worst fall beyond the elapsed second %.2f; naive change up to %.2f", worstUp,
              worstDown, naiveWorst);
        QVERIFY(updates > 10);
        QVERIFY2(worstUp < 0.2, qPrintable(QString::number(worstUp)));
        QVERIFY2(worstDown < 0.3, qPrintable(QString::number(worstDown)));
        if (alternating) QVERIFY(naiveWorst > 1.0); // the input really is jittery
    }

    void etaConvergesOnASteadyRate() {
        ui::EtaSmoother eta;
        QVERIFY(eta.eta() < 0); // unknown before any progress
        for (int i = 1; i <= 40; ++i)
            eta.add(i * 0.25, i * 0.25 * 0.01); // 1% per second
        const double remaining = (1 - 0.1) / 0.01;
        QVERIFY2(std::abs(eta.eta() - remaining) < 0.05 * remaining, qPrintable(QString::number(eta.eta())));
        eta.reset();
        QVERIFY(eta.eta() < 0);
    }

    void statusBarProgressReadsAsText() {
        QCOMPARE(ui::MainStatusBar::jobProgressText(437, 1000, "adapters"), QString("437 of 1,000 adapters"));
        QCOMPARE(ui::MainStatusBar::jobProgressText(437, 1000, QString()), QString("44%"));
        QCOMPARE(ui::MainStatusBar::jobProgressText(0, 0, QString()), QString());
    }
};

QTEST_MAIN(TestTextFormat)
#include "test_text_format.moc"
