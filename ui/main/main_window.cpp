// MainWindow (see main_window.hpp).
#include "ui/main/main_window.hpp"

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/bundled_resources.hpp"
#include "ui/clusters/cluster_view.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/resources.hpp"
#include "ui/common/text_format.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/compress/compress_panel.hpp"
#include "ui/compress/compress_settings.hpp"
#include "ui/errors/error_view.hpp"
#include "ui/export/export_controller.hpp"
#include "ui/fleet/adapter_details_pane.hpp"
#include "ui/fleet/fleet_model.hpp"
#include "ui/fleet/fleet_proxy_model.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/fleet_view.hpp"
#include "ui/fleet/import_controller.hpp"
#include "ui/main/about_text.hpp"
#include "ui/main/main_status_bar.hpp"
#include "ui/main/shortcuts_dialog.hpp"
#include "ui/playground/playground_view.hpp"
#include "ui/quality/quality_view.hpp"
#include "ui/serve/serve_view.hpp"
#include "ui/workspace/demo_workspace.hpp"
#include "ui/workspace/recent_files.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QApplication>
#include <QCloseEvent>
#include <QDesktopServices>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHash>
#include <QItemSelection>
#include <QItemSelectionModel>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPushButton>
#include <QSettings>
#include <QTabWidget>
#include <QTableView>
#include <QTimer>
#include <QUndoStack>
#include <QVBoxLayout>

namespace lorafleet::ui {

namespace {

struct TabSpec {
    const char* key;
    const char* title;
    const char* blurb; // the tab's tooltip
};

constexpr TabSpec kTabs[] = {
    {"fleet", "Fleet", "Imported adapters: name, rank, modules, size, cluster, error."},
    {"compress", "Compress", "Joint compression (JD-Full / JD-Diag) with clustering."},
    {"clusters", "Clusters", "Map of adapters coloured by cluster, and cluster sizes."},
    {"errors", "Errors", "Per-adapter error histogram and layer x module heat map."},
    {"serve", "Serve", "Local OpenAI-compatible server with live throughput and memory."},
    {"playground", "Playground", "Try an adapter: raw, compressed and base outputs side by side, streamed."},
    {"quality", "Quality",
     "Agreement of compressed adapters with their raw originals; choose which to serve raw."},
};

// Local folders (or adapter_config.json files) among dropped URLs.
QStringList droppedPaths(const QMimeData* mime) {
    QStringList out;
    if (!mime || !mime->hasUrls()) return out;
    for (const QUrl& url : mime->urls()) {
        if (!url.isLocalFile()) continue;
        const QFileInfo info(url.toLocalFile());
        if (info.isDir() || info.fileName() == QLatin1String("adapter_config.json"))
            out << info.absoluteFilePath();
    }
    return out;
}

// The platform's bindings for a standard key, or `fallback` where the platform has none (the offscreen
// and minimal platforms define no Save As or Quit).
QList<QKeySequence> shortcutsFor(QKeySequence::StandardKey key, const QKeySequence& fallback) {
    QList<QKeySequence> keys = QKeySequence::keyBindings(key);
    if (keys.isEmpty()) keys << fallback;
    return keys;
}

constexpr auto kGeometryKey = "window/geometry";
constexpr auto kStateKey = "window/state";
constexpr auto kFleetKey = "window/fleetView";
constexpr auto kTabKey = "window/tab";
constexpr auto kImportDirKey = "import/lastFolder";
constexpr auto kWorkspaceDirKey = "workspace/lastFolder";
constexpr auto kExportDirKey = "export/lastFolder";

} // namespace

MainWindow::MainWindow(QWidget* parent) : MainWindow(Options{}, parent) {}

MainWindow::MainWindow(Options options, QWidget* parent)
    : QMainWindow(parent), m_options(options), m_session(new Session(this)),
      m_demo(new DemoWorkspace(m_session, this)), m_exporter(new ExportController(m_session, this)),
      m_recent(new RecentFiles(this)) {
    initResources();
    setWindowIcon(QIcon(":/icons/lorafleet.svg"));
    setAcceptDrops(true);
    m_tabs = new QTabWidget(this);
    m_tabs->setDocumentMode(true);
    PlaygroundView* playground = nullptr;
    QualityView* quality = nullptr;
    for (const auto& spec : kTabs) {
        const QLatin1String key(spec.key);
        if (key == QLatin1String("fleet")) {
            m_fleetView = new FleetView(m_session);
            m_tabs->addTab(m_fleetView, spec.title);
        } else if (key == QLatin1String("compress")) {
            m_compressPanel = new CompressPanel(m_session);
            m_tabs->addTab(m_compressPanel, spec.title);
        } else if (key == QLatin1String("clusters")) {
            m_clusterView = new ClusterView(m_session);
            m_tabs->addTab(m_clusterView, spec.title);
        } else if (key == QLatin1String("errors")) {
            m_errorView = new ErrorView(m_session);
            m_tabs->addTab(m_errorView, spec.title);
        } else if (key == QLatin1String("serve")) {
            m_serveView = new ServeView(m_session);
            m_tabs->addTab(m_serveView, spec.title);
        } else if (key == QLatin1String("playground")) {
            playground = new PlaygroundView(m_session);
            m_tabs->addTab(playground, spec.title);
        } else if (key == QLatin1String("quality")) {
            quality = new QualityView(m_session);
            m_tabs->addTab(quality, spec.title);
        }
        m_tabs->setTabToolTip(m_tabs->count() - 1, QString::fromLatin1(spec.blurb));
    }
    setCentralWidget(m_tabs);
    m_statusBar = new MainStatusBar(m_session->host(), this);
    setStatusBar(m_statusBar);
    buildMenus();
    m_fleetView->setImportAction(m_importAction);
    m_serveView->setSelectionProvider([this] { // Serve > "Fleet table selection": adapter names
        QStringList names;
        for (int row : m_fleetView->selectedStoreRows())
            names << QString::fromStdString(m_session->store()->entry(row).adapter->name);
        return names;
    });

    Workspace* ws = m_session->workspace();
    connect(ws, &Workspace::dirtyChanged, this, &MainWindow::updateTitle);
    connect(ws, &Workspace::filePathChanged, this, &MainWindow::updateTitle);
    connect(m_session, &Session::operationFinished, m_statusBar, &MainStatusBar::setOperationText);
    connect(m_session, &Session::idle, this, &MainWindow::checkReady);
    connect(m_recent, &RecentFiles::changed, this, &MainWindow::rebuildRecentMenu);
    connect(m_fleetView, &FleetView::selectionCountChanged, this, &MainWindow::updateActions);
    connect(m_tabs, &QTabWidget::currentChanged, this, &MainWindow::updateActions);
    connect(m_fleetView->details(), &AdapterDetailsPane::normsReady, this, &MainWindow::checkReady);
    connect(m_session, &Session::bankChanged, this, &MainWindow::onBankChanged);
    connect(m_session, &Session::workspaceReset, this, &MainWindow::onWorkspaceReset);
    connect(m_session, &Session::bankChanged, m_fleetView->details(),
            [this] { m_fleetView->details()->setBank(m_session->bank()); });
    connect(m_clusterView, &ClusterView::adaptersSelected, this, &MainWindow::selectInTable);
    // Quality tab: its points and the Fleet table select each other; it opens adapters in the Playground
    // and evaluates on the Serve tab's model (the demo model when none is chosen).
    quality->setModelDirProvider([this] { return m_serveView->modelDir(); });
    connect(quality, &QualityView::adaptersSelected, this, &MainWindow::selectInTable);
    connect(m_fleetView, &FleetView::selectionCountChanged, quality, [this, quality] {
        QStringList names;
        for (int row : m_fleetView->selectedStoreRows())
            names << QString::fromStdString(m_session->store()->entry(row).adapter->name);
        quality->selectAdapters(names);
    });
    connect(quality, &QualityView::tryInPlayground, this, [this, playground](const QString& name) {
        playground->refreshAdapters();
        showTab(QStringLiteral("playground"));
        playground->setAdapter(name);
    });
    connect(m_fleetView, &FleetView::selectionCountChanged, this, &MainWindow::onTableSelectionChanged);
    CompressController* compressor = m_session->compressor();
    connect(compressor, &CompressController::started, this, &MainWindow::updateActions);
    connect(compressor, &CompressController::finished, this,
            [this](EngineJob::Outcome, const QString& message) {
                m_statusBar->setOperationText(message);
                updateActions();
                checkReady();
            });
    connect(m_exporter, &ExportController::finished, this, [this](bool ok, const QString& message) {
        m_statusBar->setOperationText(message);
        checkReady();
        if (!ok) QMessageBox::warning(this, QStringLiteral("Export"), message);
    });
    connect(m_session->store(), &FleetStore::fleetChanged, this, &MainWindow::updateActions);
    connect(m_session->importer(), &ImportController::started, this, &MainWindow::updateActions);
    connect(m_session->importer(), &ImportController::idle, this, &MainWindow::updateActions);
    connect(m_session->importer(), &ImportController::finished, this, &MainWindow::onImportFinished);
    connect(m_session, &Session::bankStateChanged, this,
            [this] { m_statusBar->setBankStaleText(m_session->bankStalenessText()); });
    connect(m_demo, &DemoWorkspace::finished, this, [this](bool ok, const QString& message) {
        m_statusBar->setOperationText(message);
        if (ok) m_fleetView->selectFirstRowIfNone();
        checkReady();
    });

    onBankChanged();
    resize(1280, 800);
    restoreLayout();
    updateTitle();
    updateActions();
    rebuildRecentMenu();
}

MainWindow::~MainWindow() = default;

QStringList MainWindow::tabKeys() {
    QStringList keys;
    for (const auto& spec : kTabs)
        keys << spec.key;
    return keys;
}

bool MainWindow::showTab(const QString& key) {
    const int index = tabKeys().indexOf(key);
    if (index < 0) return false;
    m_tabs->setCurrentIndex(index);
    return true;
}

void MainWindow::buildMenus() {
    QMenu* file = menuBar()->addMenu(QStringLiteral("&File"));
    QAction* newAction = file->addAction(QIcon::fromTheme("document-new"), QStringLiteral("&New Workspace"),
                                         this, &MainWindow::newWorkspace);
    newAction->setShortcuts(shortcutsFor(QKeySequence::New, Qt::CTRL | Qt::Key_N));
    QAction* open =
        file->addAction(QIcon::fromTheme("document-open"), QStringLiteral("&Open Workspace\u2026"), this,
                        &MainWindow::openWorkspace);
    open->setShortcuts(shortcutsFor(QKeySequence::Open, Qt::CTRL | Qt::Key_O));
    m_recentMenu = file->addMenu(QStringLiteral("Open &Recent"));
    m_saveAction =
        file->addAction(QIcon::fromTheme("document-save"), QStringLiteral("&Save"), this, &MainWindow::save);
    m_saveAction->setShortcuts(shortcutsFor(QKeySequence::Save, Qt::CTRL | Qt::Key_S));
    QAction* saveAs = file->addAction(QIcon::fromTheme("document-save-as"), QStringLiteral("Save &As\u2026"),
                                      this, &MainWindow::saveAs);
    saveAs->setShortcuts(shortcutsFor(QKeySequence::SaveAs, Qt::CTRL | Qt::SHIFT | Qt::Key_S));
    file->addSeparator();
    m_importAction =
        file->addAction(style()->standardIcon(QStyle::SP_DirOpenIcon),
                        QStringLiteral("&Import Adapters\u2026"), this, &MainWindow::importAdapters);
    m_importAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_I));
    m_importAction->setToolTip(QStringLiteral("Import PEFT adapter folders (searched recursively)"));
    file->addAction(QStringLiteral("Generate &Demo Fleet"), this, &MainWindow::runDemo);
    file->addSeparator();
    QAction* exportBankAction =
        file->addAction(QStringLiteral("Export &Bank\u2026"), this, &MainWindow::exportBank);
    exportBankAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    exportBankAction->setToolTip(QStringLiteral("Write the compressed bank to a folder"));
    QAction* exportPeftAction =
        file->addAction(QStringLiteral("Export &PEFT Adapters\u2026"), this, &MainWindow::exportPeft);
    exportPeftAction->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E));
    exportPeftAction->setToolTip(
        QStringLiteral("Rebuild standard PEFT adapters from the bank (all, or the selected ones)"));
    QAction* exportReportAction =
        file->addAction(QStringLiteral("Export Error &Report\u2026"), this, &MainWindow::exportReport);
    exportReportAction->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_R));
    exportReportAction->setToolTip(QStringLiteral("Per-adapter and per-module errors as CSV or JSON"));
    m_bankActions = {exportBankAction, exportPeftAction, exportReportAction};
    file->addSeparator();
    QAction* quit = file->addAction(QStringLiteral("&Quit"), this, &QWidget::close);
    quit->setShortcuts(shortcutsFor(QKeySequence::Quit, Qt::CTRL | Qt::Key_Q));
    quit->setMenuRole(QAction::QuitRole);

    QMenu* edit = menuBar()->addMenu(QStringLiteral("&Edit"));
    m_undoAction = m_session->undoStack()->createUndoAction(this, QStringLiteral("&Undo"));
    m_undoAction->setShortcuts(shortcutsFor(QKeySequence::Undo, Qt::CTRL | Qt::Key_Z));
    edit->addAction(m_undoAction);
    m_redoAction = m_session->undoStack()->createRedoAction(this, QStringLiteral("&Redo"));
    m_redoAction->setShortcuts(shortcutsFor(QKeySequence::Redo, Qt::CTRL | Qt::SHIFT | Qt::Key_Z));
    edit->addAction(m_redoAction);
    edit->addSeparator();
    m_findAction = edit->addAction(QStringLiteral("&Find Adapters"), this, [this] {
        showTab(QStringLiteral("fleet"));
        m_fleetView->focusFilter();
    });
    m_findAction->setShortcuts(shortcutsFor(QKeySequence::Find, Qt::CTRL | Qt::Key_F));
    m_removeAction = edit->addAction(style()->standardIcon(QStyle::SP_TrashIcon),
                                     QStringLiteral("&Remove Selected Adapters"), this,
                                     [this] { m_fleetView->removeSelected(); });
    m_removeAction->setShortcuts(shortcutsFor(QKeySequence::Delete, Qt::Key_Delete));
    m_removeAction->setToolTip(QStringLiteral(
        "Remove the selected adapters from the fleet (files are not deleted; Edit > Undo restores them)"));

    QMenu* compress = menuBar()->addMenu(QStringLiteral("&Compress"));
    m_compressAction = compress->addAction(QIcon::fromTheme("media-playback-start"),
                                           QStringLiteral("&Compress Fleet"), this, [this] {
                                               showTab(QStringLiteral("compress"));
                                               m_compressPanel->run();
                                           });
    m_compressAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_R));
    m_cancelCompressAction = compress->addAction(QStringLiteral("C&ancel Compression"),
                                                 m_session->compressor(), &CompressController::cancel);

    QMenu* serve = menuBar()->addMenu(QStringLiteral("&Serve")); // F5 / Shift+F5 (ServeView's actions)
    serve->addAction(m_serveView->startAction());
    serve->addAction(m_serveView->stopAction());

    QMenu* view = menuBar()->addMenu(QStringLiteral("&View"));
    for (int i = 0; i < int(std::size(kTabs)); ++i) {
        const QString key = QString::fromLatin1(kTabs[i].key);
        view->addAction(QString::fromLatin1(kTabs[i].title), QKeySequence(Qt::CTRL | Qt::Key(Qt::Key_1 + i)),
                        this, [this, key] { showTab(key); });
    }

    QMenu* help = menuBar()->addMenu(QStringLiteral("&Help"));
    m_userGuideAction = help->addAction(QStringLiteral("&User Guide"), this, &MainWindow::openUserGuide);
    m_userGuideAction->setShortcuts(shortcutsFor(QKeySequence::HelpContents, Qt::Key_F1));
    m_userGuideAction->setToolTip(QStringLiteral("Open the README's console section"));
    m_shortcutsAction =
        help->addAction(QStringLiteral("&Keyboard Shortcuts"), this, &MainWindow::showShortcuts);
    m_shortcutsAction->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Slash));
    help->addSeparator();
    QAction* about = help->addAction(QStringLiteral("&About LoRA Fleet"), this, &MainWindow::showAbout);
    about->setMenuRole(QAction::AboutRole);
}

void MainWindow::rebuildRecentMenu() {
    m_recentMenu->clear();
    const QStringList files = m_recent->files();
    for (int i = 0; i < files.size(); ++i) {
        const QString path = files[i];
        const QString label = QStringLiteral("&%1  %2").arg(i + 1).arg(QDir::toNativeSeparators(path));
        m_recentMenu->addAction(label, this, [this, path] {
            if (maybeSave()) openPath(path);
        });
    }
    if (!files.isEmpty()) m_recentMenu->addSeparator();
    QAction* clear = m_recentMenu->addAction(QStringLiteral("&Clear Menu"), m_recent, &RecentFiles::clear);
    clear->setEnabled(!files.isEmpty());
}

void MainWindow::updateTitle() {
    const Workspace* ws = m_session->workspace();
    setWindowTitle(QStringLiteral("%1[*] \u2014 LoRA Fleet").arg(ws->displayName()));
    setWindowModified(ws->isDirty());
    setWindowFilePath(ws->filePath());
}

void MainWindow::updateActions() {
    const bool fleetTab = m_tabs->currentWidget() == m_fleetView;
    m_removeAction->setEnabled(fleetTab && !m_fleetView->selectedStoreRows().isEmpty());
    const bool compressing = m_session->compressor()->isRunning();
    const bool importing = m_session->importer()->isBusy();
    m_compressAction->setEnabled(!compressing && !importing && !m_session->store()->isEmpty());
    m_importAction->setEnabled(!compressing);
    m_importAction->setToolTip(compressing
                                   ? QStringLiteral("Import is unavailable while a compression runs")
                                   : QStringLiteral("Import PEFT adapter folders (searched recursively)"));
    m_cancelCompressAction->setEnabled(compressing);
    for (QAction* a : m_bankActions)
        a->setEnabled(m_session->bank() != nullptr);
}

void MainWindow::onBankChanged() {
    const auto bank = m_session->bank();
    m_clusterView->setBank(bank);
    m_errorView->setBank(bank);
    onTableSelectionChanged(); // highlight the table's selection on the new map
    updateActions();
}

void MainWindow::selectInTable(const QStringList& names) {
    if (m_syncingSelection) return;
    m_syncingSelection = true;
    const QSet<QString> wanted(names.begin(), names.end());
    const FleetStore* store = m_session->store();
    QItemSelection selection;
    QModelIndex first;
    for (int row = 0; row < store->size(); ++row) {
        if (!wanted.contains(QString::fromStdString(store->entry(row).adapter->name))) continue;
        const QModelIndex index = m_fleetView->proxy()->mapFromSource(m_fleetView->model()->index(row, 0));
        if (!index.isValid()) continue; // filtered out
        if (!first.isValid()) first = index;
        selection.select(index, index);
    }
    QItemSelectionModel* sm = m_fleetView->table()->selectionModel();
    sm->select(selection, QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
    if (first.isValid()) {
        sm->setCurrentIndex(first, QItemSelectionModel::NoUpdate);
        m_fleetView->table()->scrollTo(first);
    }
    m_syncingSelection = false;
}

void MainWindow::onTableSelectionChanged() {
    if (m_syncingSelection || !m_session->bank()) return;
    m_syncingSelection = true;
    QStringList names;
    for (int row : m_fleetView->selectedStoreRows())
        names << QString::fromStdString(m_session->store()->entry(row).adapter->name);
    m_clusterView->selectAdapters(names);
    m_syncingSelection = false;
}

QString MainWindow::exportFolderStart() const {
    QSettings settings;
    const QString ws = m_session->workspace()->filePath();
    return settings.value(kExportDirKey, ws.isEmpty() ? QDir::homePath() : QFileInfo(ws).absolutePath())
        .toString();
}

void MainWindow::exportBank() {
    if (!m_session->bank()) return;
    const QString ws = m_session->workspace()->filePath();
    // Not NAME.bank: that is the workspace's own bank, which Save writes.
    const QString name = ws.isEmpty() ? QStringLiteral("fleet-export.bank")
                                      : QFileInfo(ws).completeBaseName() + "-export.bank";
    QFileDialog dialog(this, QStringLiteral("Export Bank"), QDir(exportFolderStart()).filePath(name));
    dialog.setAcceptMode(QFileDialog::AcceptSave);
    dialog.setFileMode(QFileDialog::AnyFile);
    dialog.setOption(QFileDialog::DontConfirmOverwrite); // asked below, for folders too
    if (dialog.exec() != QDialog::Accepted || dialog.selectedFiles().isEmpty()) return;
    const QString path = dialog.selectedFiles().front();
    QSettings().setValue(kExportDirKey, QFileInfo(path).absolutePath());
    bool overwrite = false;
    if (QFileInfo::exists(path)) {
        if (QMessageBox::question(
                this, QStringLiteral("Export Bank"),
                QStringLiteral("%1 already exists. Replace the bank there?\n(A folder that is "
                               "not a bank is never replaced.)")
                    .arg(path)) != QMessageBox::Yes)
            return;
        overwrite = true;
    }
    QString error;
    if (!m_exporter->exportBank(path, overwrite, &error))
        QMessageBox::warning(this, QStringLiteral("Export Bank"), error);
}

void MainWindow::exportPeft() {
    const auto bank = m_session->bank();
    if (!bank) return;
    QStringList selected;
    for (int row : m_fleetView->selectedStoreRows()) {
        const std::string& name = m_session->store()->entry(row).adapter->name;
        if (bank->find_adapter(name)) selected << QString::fromStdString(name);
    }
    QStringList names; // empty: all
    if (!selected.isEmpty() && selected.size() < int(bank->adapters.size())) {
        QMessageBox box(QMessageBox::Question, QStringLiteral("Export PEFT Adapters"),
                        QStringLiteral("Export the selected adapters or the whole bank?"),
                        QMessageBox::Cancel, this);
        QPushButton* some =
            box.addButton(QStringLiteral("%1 Selected").arg(plural(selected.size(), "Adapter", "Adapters")),
                          QMessageBox::AcceptRole);
        QPushButton* all =
            box.addButton(QStringLiteral("All %1").arg(formatCount(qint64(bank->adapters.size()))),
                          QMessageBox::AcceptRole);
        box.setDefaultButton(some);
        box.exec();
        if (box.clickedButton() == some)
            names = selected;
        else if (box.clickedButton() != all)
            return;
    }
    const QString dir = QFileDialog::getExistingDirectory(this, QStringLiteral("Export PEFT Adapters Into"),
                                                          exportFolderStart());
    if (dir.isEmpty()) return;
    QSettings().setValue(kExportDirKey, dir);
    QString error;
    if (!m_exporter->exportPeft(dir, names, /*overwrite=*/false, &error))
        QMessageBox::warning(this, QStringLiteral("Export PEFT Adapters"), error);
}

void MainWindow::exportReport() {
    if (!m_session->bank()) return;
    QString selectedFilter;
    const QString path = QFileDialog::getSaveFileName(
        this, QStringLiteral("Export Error Report"), QDir(exportFolderStart()).filePath("errors.csv"),
        QStringLiteral("CSV (*.csv);;JSON (*.json)"), &selectedFilter);
    if (path.isEmpty()) return;
    QSettings().setValue(kExportDirKey, QFileInfo(path).absolutePath());
    QString error;
    if (!m_exporter->exportReport(path, &error))
        QMessageBox::warning(this, QStringLiteral("Export Error Report"), error);
}

bool MainWindow::maybeSave() {
    if (!m_session->workspace()->isDirty()) return true;
    const auto answer = QMessageBox::warning(
        this, QStringLiteral("Unsaved Changes"),
        QStringLiteral("The workspace \"%1\" has unsaved changes.\nDo you want to save them?")
            .arg(m_session->workspace()->displayName()),
        QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel, QMessageBox::Save);
    if (answer == QMessageBox::Save) return save();
    return answer == QMessageBox::Discard;
}

bool MainWindow::save() {
    const QString path = m_session->workspace()->filePath();
    if (path.isEmpty()) return saveAs();
    QString error;
    if (!m_session->saveWorkspace(path, &error)) {
        QMessageBox::critical(this, QStringLiteral("Save Workspace"),
                              QStringLiteral("Cannot save the workspace.\n\n%1").arg(error));
        return false;
    }
    m_recent->add(path);
    return true;
}

bool MainWindow::saveAs() {
    QSettings settings;
    QString start = m_session->workspace()->filePath();
    if (start.isEmpty())
        start = QDir(settings.value(kWorkspaceDirKey, QDir::homePath()).toString())
                    .filePath(QStringLiteral("fleet.%1").arg(Workspace::defaultSuffix()));
    QFileDialog dialog(this, QStringLiteral("Save Workspace As"), start, Workspace::fileFilter());
    dialog.setAcceptMode(QFileDialog::AcceptSave);
    dialog.setDefaultSuffix(Workspace::defaultSuffix());
    dialog.selectFile(start);
    if (dialog.exec() != QDialog::Accepted || dialog.selectedFiles().isEmpty()) return false;
    const QString path = dialog.selectedFiles().front();
    QString error;
    if (!m_session->saveWorkspace(path, &error)) {
        QMessageBox::critical(this, QStringLiteral("Save Workspace"),
                              QStringLiteral("Cannot save the workspace.\n\n%1").arg(error));
        return false;
    }
    settings.setValue(kWorkspaceDirKey, QFileInfo(path).absolutePath());
    m_recent->add(path);
    return true;
}

void MainWindow::newWorkspace() {
    if (!maybeSave()) return;
    m_session->newWorkspace();
    m_statusBar->setOperationText(QStringLiteral("New workspace"));
}

void MainWindow::openWorkspace() {
    if (!maybeSave()) return;
    QSettings settings;
    const QString path = QFileDialog::getOpenFileName(
        this, QStringLiteral("Open Workspace"), settings.value(kWorkspaceDirKey, QDir::homePath()).toString(),
        Workspace::fileFilter());
    if (path.isEmpty()) return;
    settings.setValue(kWorkspaceDirKey, QFileInfo(path).absolutePath());
    openPath(path);
}

void MainWindow::openPath(const QString& path) {
    QString error;
    if (!openWorkspaceFile(path, &error)) {
        QMessageBox::warning(this, QStringLiteral("Open Workspace"),
                             QStringLiteral("Cannot open the workspace.\n\n%1").arg(error));
        if (!QFileInfo::exists(path)) m_recent->remove(path);
    }
}

bool MainWindow::openWorkspaceFile(const QString& path, QString* error) {
    if (!m_session->openWorkspace(path, error)) return false;
    m_recent->add(path);
    showTab(QStringLiteral("fleet"));
    QTimer::singleShot(0, this, &MainWindow::checkReady); // a workspace without adapters is ready at once
    return true;
}

void MainWindow::importAdapters() {
    QSettings settings;
    if (!m_pickImportFolder)
        m_pickImportFolder = [this](const QString& start) {
            return QFileDialog::getExistingDirectory(this, QStringLiteral("Import Adapters"), start);
        };
    QString start = settings.value(kImportDirKey).toString();
    if (start.isEmpty() || !QFileInfo(start).isDir()) start = QDir::homePath();
    const QString dir = m_pickImportFolder(start);
    if (dir.isEmpty()) return;
    settings.setValue(kImportDirKey, dir);
    showTab(QStringLiteral("fleet"));
    QString error;
    if (!m_session->importPaths({dir}, &error))
        QMessageBox::information(this, QStringLiteral("Import Adapters"), error);
}

void MainWindow::onImportFinished(const ImportReport& report) {
    if (report.refusedNames.isEmpty() || report.policy != DuplicateNames::Ask) return;
    if (!m_askRename) {
        m_askRename = [this](const QStringList& names) {
            QStringList shown = names.first(std::min<qsizetype>(names.size(), 10));
            if (names.size() > shown.size())
                shown << QStringLiteral("\u2026 and %1 more").arg(names.size() - shown.size());
            QMessageBox box(QMessageBox::Question, QStringLiteral("Duplicate Adapter Names"),
                            QStringLiteral("%1 not imported: the fleet already has adapters with these "
                                           "names.\n\n%2\n\nImport them under new names (NAME-2)?")
                                .arg(plural(names.size(), "adapter was", "adapters were"), shown.join('\n')),
                            QMessageBox::NoButton, this);
            QPushButton* rename = box.addButton(QStringLiteral("Import Renamed"), QMessageBox::AcceptRole);
            box.addButton(QStringLiteral("Skip Them"), QMessageBox::RejectRole);
            box.setDefaultButton(rename);
            box.exec();
            return box.clickedButton() == rename;
        };
    }
    if (m_askRename(report.refusedNames)) {
        QString error;
        if (!m_session->importPaths(report.refusedDirs, DuplicateNames::Rename, &error))
            m_statusBar->setOperationText(error);
    }
}

void MainWindow::runDemo() {
    if (!maybeSave()) return;
    startDemo();
}

void MainWindow::startDemo() {
    showTab(QStringLiteral("fleet"));
    m_demo->start(); // the status bar shows its progress; DemoWorkspace::finished reports the outcome
}

bool MainWindow::isReady() const {
    return !m_session->isBusy() && !m_demo->isRunning() && !m_fleetView->details()->normsPending() &&
           !m_exporter->isRunning();
}

void MainWindow::checkReady() {
    if (isReady()) emit ready();
}

void MainWindow::closeEvent(QCloseEvent* event) {
    if (!maybeSave()) {
        event->ignore();
        return;
    }
    if (m_options.persistLayout) saveLayout();
    m_session->importer()->abort();
    m_session->compressor()->cancel();
    event->accept();
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
    if (!droppedPaths(event->mimeData()).isEmpty()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
    const QStringList paths = droppedPaths(event->mimeData());
    if (paths.isEmpty()) return;
    event->acceptProposedAction();
    showTab(QStringLiteral("fleet"));
    if (m_session->importPaths(paths)) { // refused while compressing: the status bar says why
        const QFileInfo first(paths.front());
        QSettings().setValue(kImportDirKey, first.isDir() ? first.absoluteFilePath() : first.absolutePath());
    }
}

void MainWindow::restoreLayout() {
    if (!m_options.persistLayout) return;
    QSettings settings;
    restoreGeometry(settings.value(kGeometryKey).toByteArray());
    restoreState(settings.value(kStateKey).toByteArray());
    m_fleetView->restoreState(settings.value(kFleetKey).toByteArray());
    m_tabs->setCurrentIndex(std::clamp(settings.value(kTabKey, 0).toInt(), 0, m_tabs->count() - 1));
}

void MainWindow::saveLayout() {
    QSettings settings;
    settings.setValue(kGeometryKey, saveGeometry());
    settings.setValue(kStateKey, saveState());
    settings.setValue(kFleetKey, m_fleetView->saveState());
    settings.setValue(kTabKey, m_tabs->currentIndex());
}

void MainWindow::showShortcuts() {
    ShortcutsDialog dialog(menuBar(), this);
    dialog.exec();
}

QUrl MainWindow::userGuideUrl() {
    const auto guide = io::find_user_guide();
    if (!guide.path) return {};
    QUrl url = QUrl::fromLocalFile(QString::fromStdString(guide.path->string()));
    url.setFragment(QStringLiteral("the-console")); // the "## The console" heading's anchor
    return url;
}

void MainWindow::openUserGuide() {
    const QUrl url = userGuideUrl();
    if (url.isEmpty()) {
        const auto guide = io::find_user_guide();
        QStringList places;
        for (const auto& p : guide.searched)
            places << QString::fromStdString(p.string());
        QMessageBox::information(this, QStringLiteral("User Guide"),
                                 QStringLiteral("The user guide (README.md) was not found. Looked in:\n%1")
                                     .arg(places.join('\n')));
        return;
    }
    if (!m_openUrl) m_openUrl = [](const QUrl& u) { return QDesktopServices::openUrl(u); };
    if (!m_openUrl(url))
        m_statusBar->setOperationText(QStringLiteral("Could not open %1").arg(url.toLocalFile()));
}

void MainWindow::onWorkspaceReset() {
    m_fleetView->filterEdit()->clear();
    m_serveView->resetForNewWorkspace();
}

void MainWindow::showAbout() {
    QMessageBox::about(this, QStringLiteral("About LoRA Fleet"), aboutText());
}

} // namespace lorafleet::ui
