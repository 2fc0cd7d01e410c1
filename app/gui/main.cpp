// lorafleet: the desktop console. Options: --demo (a generated demo workspace), --workspace FILE,
// --screenshot PNG [--tab KEY] (render the main window to a PNG and exit, for docs and tests; with --demo
// or --workspace it waits until the window is ready: the fleet imported, the workspace's bank read, the
// demo's compression finished; with --tab serve it also starts the demo load and waits for live charts).
// Headless saving (scripts and the crash-consistency test): --save-as FILE [--compress] with --workspace
// or --demo waits until the workspace is ready, compresses the fleet again with the workspace's settings
// when --compress is given, saves the workspace as FILE (File > Save As: FILE, FILE's NAME.bank and, for
// the demo, NAME.adapters/) and exits: 0 when saved, 1 with one line on stderr otherwise.
#include "ui/common/resources.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/compress/compress_settings.hpp"
#include "ui/main/main_window.hpp"
#include "ui/serve/serve_controller.hpp"
#include "ui/serve/serve_view.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

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

// --save-as: optionally recompresses, then saves; the exit code of the process.
int saveHeadless(lorafleet::ui::MainWindow& window, const QString& path, bool compress) {
    using namespace lorafleet::ui;
    if (!waitUntilReady(window)) {
        std::fprintf(stderr, "lorafleet: still busy after %d s, not saving\n", kReadyTimeoutMs / 1000);
        return 1;
    }
    Session* session = window.session();
    if (compress) {
        QEventLoop loop;
        QObject::connect(session->compressor(), &CompressController::finished, &loop,
                         [&loop](EngineJob::Outcome outcome, const QString& message) {
                             if (outcome != EngineJob::Outcome::Succeeded)
                                 std::fprintf(stderr, "lorafleet: compression failed: %s\n",
                                              qPrintable(message));
                             loop.exit(outcome == EngineJob::Outcome::Succeeded ? 0 : 1);
                         });
        QString error;
        const auto settings = CompressSettings::fromJson(session->workspace()->data().compression);
        if (!session->compressor()->start(settings, &error)) {
            std::fprintf(stderr, "lorafleet: cannot compress: %s\n", qPrintable(error));
            return 1;
        }
        if (loop.exec() != 0) return 1;
    }
    QString error;
    if (!session->saveWorkspace(path, &error)) {
        std::fprintf(stderr, "lorafleet: %s\n", qPrintable(error));
        return 1;
    }
    return 0;
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
    QCommandLineOption saveAs("save-as", "Save the workspace as FILE (with its bank) and exit.", "FILE");
    QCommandLineOption compressOpt("compress", "With --save-as: compress the fleet again before saving.");
    parser.addOptions({demo, workspace, screenshot, tab, saveAs, compressOpt});
    parser.process(app);

    if (parser.isSet(demo) && parser.isSet(workspace)) {
        std::fprintf(stderr, "lorafleet: --demo and --workspace cannot be combined\n");
        return 2;
    }
    const bool shot = parser.isSet(screenshot);
    if (parser.isSet(saveAs) && (shot || !(parser.isSet(demo) || parser.isSet(workspace)))) {
        std::fprintf(stderr, "lorafleet: --save-as needs --workspace or --demo and no --screenshot\n");
        return 2;
    }
    if (parser.isSet(compressOpt) && !parser.isSet(saveAs)) {
        std::fprintf(stderr, "lorafleet: --compress is only used with --save-as\n");
        return 2;
    }
    lorafleet::ui::MainWindow::Options options;
    // Screenshots are reproducible and headless saves leave no trace: default layout, nothing saved.
    options.persistLayout = !shot && !parser.isSet(saveAs);
    lorafleet::ui::MainWindow window(options);
    if (parser.isSet(demo)) {
        window.startDemo();
    } else if (parser.isSet(workspace)) {
        QString error;
        if (!window.openWorkspaceFile(parser.value(workspace), &error)) {
            std::fprintf(stderr, "lorafleet: %s\n", qPrintable(error));
            if (shot || parser.isSet(saveAs)) return 1;
            QMessageBox::warning(&window, "Open Workspace", "Cannot open the workspace.\n\n" + error);
        }
    }
    if (parser.isSet(saveAs)) return saveHeadless(window, parser.value(saveAs), parser.isSet(compressOpt));
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
