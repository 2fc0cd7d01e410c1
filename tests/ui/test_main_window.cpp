// The main window offscreen: every tab can be shown by key, unknown keys are refused, and a grab at
// the default size renders a real 1280x800 image (what `lorafleet --screenshot` saves).
#include "ui/main/main_window.hpp"

#include <QLabel>
#include <QStatusBar>
#include <QTabWidget>
#include <QtTest/QtTest>

class TestMainWindow : public QObject {
    Q_OBJECT
private slots:
    void tabsByKey() {
        lorafleet::ui::MainWindow w;
        const auto* tabs = w.findChild<QTabWidget*>();
        QVERIFY(tabs);
        const QStringList keys = lorafleet::ui::MainWindow::tabKeys();
        QCOMPARE(keys.size(), tabs->count());
        for (int i = 0; i < keys.size(); ++i) {
            QVERIFY(w.showTab(keys[i]));
            QCOMPARE(tabs->currentIndex(), i);
        }
        QVERIFY(!w.showTab("nonsense"));
    }
    void grabHasDefaultSize() {
        lorafleet::ui::MainWindow w;
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        const QImage img = w.grab().toImage();
        QVERIFY(img.width() >= 1280 && img.height() >= 800);
        // Not a blank image: the tab bar and status text draw pixels of more than one colour.
        QSet<QRgb> colours;
        for (int y = 0; y < img.height(); y += 7)
            for (int x = 0; x < img.width(); x += 7)
                colours.insert(img.pixel(x, y));
        QVERIFY(colours.size() > 3);
    }
    void statusBarNamesBackend() {
        lorafleet::ui::MainWindow w;
        const auto labels = w.statusBar()->findChildren<QLabel*>();
        bool found = false;
        for (const auto* l : labels)
            found |= l->text().startsWith("CPU") || l->text().startsWith("GPU");
        QVERIFY(found);
    }
};

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
