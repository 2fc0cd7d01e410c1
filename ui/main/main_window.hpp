// The console's main window: one tab per part of the workflow (Fleet, Compress, Clusters, Errors,
// Serve), a status bar with the compute backend, and the application menus.
// Thread affinity: GUI thread only.
#pragma once

#include <QMainWindow>

class QTabWidget;
class QLabel;

namespace lorafleet::ui {

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(QWidget* parent = nullptr);

    // Tab keys: "fleet", "compress", "clusters", "errors", "serve". Returns false for an unknown key.
    bool showTab(const QString& key);
    static QStringList tabKeys();

private:
    void buildMenus();
    void showAbout();

    QTabWidget* m_tabs = nullptr;
    QLabel* m_backendLabel = nullptr;
};

} // namespace lorafleet::ui
