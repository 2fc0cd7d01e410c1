// lorafleet: the desktop console. Options: --demo (a generated demo workspace), --workspace FILE,
// --screenshot PNG [--tab KEY] (render the main window to a PNG and exit, for docs and tests; with --demo
// or --workspace it waits until the window is ready: the fleet imported, the workspace's bank read, the
// demo's compression finished; with --tab serve it also starts the demo load and waits for live charts).
#include "ui/common/resources.hpp"
#include "ui/main/main_window.hpp"
#include "ui/serve/serve_controller.hpp"
#include "ui/serve/serve_view.hpp"

#include <QApplication>
#include <QCommandLineParser>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QMessageBox>
#include <QPixmap>
#include <QTimer>

#include <cstdio>

namespace {

constexpr int kReadyTimeoutMs = 300'000; // a screenshot waits at most this long for the demo
constexpr int kServeTimeoutMs = 120'000; // and this long for the Serve tab's live charts

// Runs the event loop until the window is ready (or the timeout); false on timeout.
bool waitUntilReady(lorafleet::ui::MainWindow& window) {
    if (window.isReady()) return true;
    QEventLoop loop;
    QTimer timeout;
    timeout.setSingleShot(true);
    QObject::connect(&timeout, &QTimer::timeout, &loop, [&loop] { loop.exit(1); });
    QObject::connect(&window, &lorafleet::ui::MainWindow::ready, &loop, [&loop, &window] {
        if (window.isReady()) loop.exit(0);
    });
    timeout.start(kReadyTimeoutMs);
    return loop.exec() == 0;
}

// Starts the Serve tab's engine with the demo load and waits for a few seconds of live charts.
bool startServeLoad(lorafleet::ui::MainWindow& window) {
    using lorafleet::ui::ServeController;
    using lorafleet::ui::ServeView;
    ServeView* view = window.serveView();
    QEventLoop loop;
    QTimer::singleShot(kServeTimeoutMs, &loop, [&] {
        std::fprintf(stderr, "lorafleet: no live serving data after %d s\n", kServeTimeoutMs / 1000);
        loop.exit(1);
    });
    QObject::connect(view, &ServeView::liveDataReady, &loop, [&] { loop.exit(0); });
    QObject::connect(view->controller(), &ServeController::failed, &loop, [&](const QString& error) {
        std::fprintf(stderr, "lorafleet: serving failed: %s\n", qPrintable(error));
        loop.exit(1);
    });
    view->startDemoLoad();
    return loop.exec() == 0;
}

} // namespace

int main(int argc, char** argv) {
    QApplication app(argc, argv);
    lorafleet::ui::initResources(); // the icons live in the static lorafleet_ui library
    QApplication::setApplicationName("lorafleet");
    QApplication::setOrganizationName("LoRA Fleet");
    QApplication::setApplicationVersion(LORAFLEET_VERSION);
    QApplication::setWindowIcon(QIcon(":/icons/lorafleet.svg"));

    QCommandLineParser parser;
    parser.setApplicationDescription("LoRA Fleet console: compress and serve fleets of LoRA adapters");
    parser.addHelpOption();
    parser.addVersionOption();
    QCommandLineOption demo("demo", "Open a demo workspace generated on the fly.");
    QCommandLineOption workspace("workspace", "Open the workspace FILE.", "FILE");
    QCommandLineOption screenshot("screenshot", "Render the main window to PNG and exit.", "PNG");
    QCommandLineOption tab("tab", "Tab to show: fleet, compress, clusters, errors, serve.", "KEY", "fleet");
    parser.addOptions({demo, workspace, screenshot, tab});
    parser.process(app);

    if (parser.isSet(demo) && parser.isSet(workspace)) {
        std::fprintf(stderr, "lorafleet: --demo and --workspace cannot be combined\n");
        return 2;
    }
    const bool shot = parser.isSet(screenshot);
    lorafleet::ui::MainWindow::Options options;
    options.persistLayout = !shot; // screenshots are reproducible: default layout, nothing saved
    lorafleet::ui::MainWindow window(options);
    if (parser.isSet(demo)) {
        window.startDemo();
    } else if (parser.isSet(workspace)) {
        QString error;
        if (!window.openWorkspaceFile(parser.value(workspace), &error)) {
            std::fprintf(stderr, "lorafleet: %s\n", qPrintable(error));
            if (shot) return 1;
            QMessageBox::warning(&window, "Open Workspace", "Cannot open the workspace.\n\n" + error);
        }
    }
    if (!window.showTab(parser.value(tab))) {
        std::fprintf(stderr, "lorafleet: unknown tab '%s' (one of: %s)\n", qPrintable(parser.value(tab)),
                     qPrintable(lorafleet::ui::MainWindow::tabKeys().join(", ")));
        return 2;
    }
    if (shot) {
        window.show();
        if (!waitUntilReady(window)) {
            std::fprintf(stderr, "lorafleet: still busy after %d s, not taking the screenshot\n",
                         kReadyTimeoutMs / 1000);
            return 1;
        }
        // The Serve tab is shown running: the in-process engine under the built-in load generator.
        if (parser.value(tab) == "serve" && !startServeLoad(window)) return 1;
        QApplication::processEvents();
        const QString png = parser.value(screenshot);
        if (!window.grab().save(png, "PNG")) {
            std::fprintf(stderr, "lorafleet: cannot write screenshot %s\n", qPrintable(png));
            return 1;
        }
        return 0;
    }
    window.show();
    return QApplication::exec();
}
