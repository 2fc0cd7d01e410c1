// The console's main window: one tab per part of the workflow (Fleet, Compress, Clusters, Errors,
// Serve), the application menus (File: workspace New/Open/Recent/Save/Save As, Import Adapters, Export
// Bank / PEFT Adapters / Error Report; Edit: Undo, Redo, Find, Remove; Compress: Run, Cancel; View: tabs;
// Help: About), drag and drop of adapter folders, the window title with the workspace name and its
// unsaved-changes marker, and the MainStatusBar. The Clusters and Errors views follow the session's bank;
// the selection of the cluster map and of the fleet table follow each other (by adapter name). All work
// goes through the Session (ui/workspace/session.hpp) and the ExportController; this class only adds
// dialogs and persistence of the window layout.
// Closing with unsaved changes asks Save / Discard / Cancel. Removing adapters asks first and can be
// undone; an import that met names already in the fleet asks whether to import those renamed (NAME-2);
// imports are refused while a compression runs (the action is disabled, a drop is answered in the status
// bar). The status bar shows when the bank is out of date.
// Thread affinity: GUI thread only.
#pragma once

#include <QMainWindow>
#include <QUrl>

#include <functional>

class QAction;
class QMenu;
class QTabWidget;

namespace lorafleet::ui {

class ClusterView;
class CompressPanel;
class DemoWorkspace;
class ErrorView;
class ServeView;
class ExportController;
class FleetView;
class MainStatusBar;
class RecentFiles;
class Session;
struct ImportReport;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    struct Options {
        // Restore the window layout from QSettings and save it on close. Off for screenshots and tests.
        bool persistLayout = false;
    };

    explicit MainWindow(QWidget* parent = nullptr);
    explicit MainWindow(Options options, QWidget* parent = nullptr);
    ~MainWindow() override;

    // Tab keys: "fleet", "compress", "clusters", "errors", "serve". Returns false for an unknown key.
    bool showTab(const QString& key);
    static QStringList tabKeys();

    Session* session() const { return m_session; }
    FleetView* fleetView() const { return m_fleetView; }
    CompressPanel* compressPanel() const { return m_compressPanel; }
    ClusterView* clusterView() const { return m_clusterView; }
    ErrorView* errorView() const { return m_errorView; }
    ServeView* serveView() const { return m_serveView; }
    ExportController* exporter() const { return m_exporter; }
    MainStatusBar* mainStatusBar() const { return m_statusBar; }

    // `--demo`: generate and import the demo fleet (asynchronous; ready() follows).
    void startDemo();
    // `--workspace FILE` and File > Open: false (with `error`) when the file cannot be read; otherwise
    // its adapters are imported asynchronously and ready() follows.
    bool openWorkspaceFile(const QString& path, QString* error);
    // No import, demo generation, compression, bank reading or details computation is running: the
    // window shows its final state.
    bool isReady() const;

    // File actions without the dialogs' questions where possible; each returns false when the operator
    // cancelled or saving failed.
    bool maybeSave(); // asks Save / Discard / Cancel when the workspace has unsaved changes
    bool save();
    bool saveAs();

    // Asked after an import refused adapters whose names the fleet has (DuplicateNames::Ask): true imports
    // them renamed NAME-2. The default asks with a message box listing them; tests install their own.
    using AskRename = std::function<bool(const QStringList& names)>;
    void setAskRename(AskRename ask) { m_askRename = std::move(ask); }
    QAction* undoAction() const { return m_undoAction; }
    QAction* redoAction() const { return m_redoAction; }
    QAction* importAction() const { return m_importAction; }

    // Help > User Guide opens the README (the installed copy, else the checkout's: engine/io/
    // bundled_resources.hpp) at its console section through `openUrl` (QDesktopServices::openUrl by
    // default; tests install their own). userGuideUrl() is that URL, empty when no README was found.
    using OpenUrl = std::function<bool(const QUrl& url)>;
    void setOpenUrl(OpenUrl open) { m_openUrl = std::move(open); }
    static QUrl userGuideUrl();
    QAction* userGuideAction() const { return m_userGuideAction; }
    QAction* shortcutsAction() const { return m_shortcutsAction; }
    // File > Import Adapters asks for a folder through `pick(startFolder)` (a QFileDialog by default;
    // tests install their own); the start is the last folder imported from (QSettings), else home.
    using PickFolder = std::function<QString(const QString& startFolder)>;
    void setPickImportFolder(PickFolder pick) { m_pickImportFolder = std::move(pick); }

signals:
    void ready(); // isReady() became true after startDemo() / openWorkspaceFile() / an import

protected:
    void closeEvent(QCloseEvent* event) override;
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    void buildMenus();
    void rebuildRecentMenu();
    void updateTitle();
    void updateActions();
    void newWorkspace();
    void openWorkspace();
    void openPath(const QString& path); // with a message box on failure
    void importAdapters();
    void runDemo();
    void showAbout();
    void showShortcuts();
    void openUserGuide();
    void onWorkspaceReset(); // New / Open: every view back to its empty state
    QString exportFolderStart() const;
    void exportBank();
    void exportPeft();
    void exportReport();
    void onBankChanged();
    void onImportFinished(const ImportReport& report);
    void selectInTable(const QStringList& names); // from the cluster map
    void onTableSelectionChanged();               // to the cluster map
    void checkReady();
    void restoreLayout();
    void saveLayout();

    Options m_options;
    Session* m_session = nullptr;
    DemoWorkspace* m_demo = nullptr;
    QTabWidget* m_tabs = nullptr;
    FleetView* m_fleetView = nullptr;
    CompressPanel* m_compressPanel = nullptr;
    ClusterView* m_clusterView = nullptr;
    ErrorView* m_errorView = nullptr;
    ServeView* m_serveView = nullptr;
    ExportController* m_exporter = nullptr;
    bool m_syncingSelection = false;
    MainStatusBar* m_statusBar = nullptr;
    RecentFiles* m_recent = nullptr;
    QMenu* m_recentMenu = nullptr;
    QAction* m_saveAction = nullptr;
    QAction* m_importAction = nullptr;
    QAction* m_removeAction = nullptr;
    QAction* m_findAction = nullptr;
    QList<QAction*> m_bankActions; // enabled only with a bank
    QAction* m_compressAction = nullptr;
    QAction* m_cancelCompressAction = nullptr;
    QAction* m_undoAction = nullptr;
    QAction* m_redoAction = nullptr;
    AskRename m_askRename;
    OpenUrl m_openUrl;
    PickFolder m_pickImportFolder;
    QAction* m_userGuideAction = nullptr;
    QAction* m_shortcutsAction = nullptr;
};

} // namespace lorafleet::ui
