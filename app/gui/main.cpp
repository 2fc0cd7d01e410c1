// lorafleet: the desktop console. Options: --demo (a generated demo workspace), --workspace FILE,
// --screenshot PNG [--tab KEY] (render the main window to a PNG and exit, for docs and tests).
#include "ui/main/main_window.hpp"

#include <QApplication>
#include <QCommandLineParser>
#include <QPixmap>
#include <QTimer>

#include <cstdio>

int main(int argc, char** argv) {
    Q_INIT_RESOURCE(lorafleet); // resources live in the static lorafleet_ui library
    QApplication app(argc, argv);
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

    lorafleet::ui::MainWindow window;
    if (!window.showTab(parser.value(tab))) {
        std::fprintf(stderr, "lorafleet: unknown tab '%s' (one of: %s)\n", qPrintable(parser.value(tab)),
                     qPrintable(lorafleet::ui::MainWindow::tabKeys().join(", ")));
        return 2;
    }
    if (parser.isSet(screenshot)) {
        window.show();
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
