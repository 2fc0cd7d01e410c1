// MainWindow (see main_window.hpp).
#include "ui/main/main_window.hpp"

#include "kernels/device_probe.hpp"
#include "ui/common/resources.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/adapter_details_pane.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/fleet_view.hpp"
#include "ui/fleet/import_controller.hpp"
#include "ui/main/main_status_bar.hpp"
#include "ui/workspace/demo_workspace.hpp"
#include "ui/workspace/recent_files.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QSettings>
#include <QTabWidget>
#include <QTableView>
#include <QTimer>
#include <QVBoxLayout>
#include <qcustomplot.h>

namespace lorafleet::ui {

namespace {

struct TabSpec {
    const char* key;
    const char* title;
    const char* blurb; // shown until the tab's view exists
};

constexpr TabSpec kTabs[] = {
    {"fleet", "Fleet", "Imported adapters: name, rank, modules, size, cluster, error."},
    {"compress", "Compress", "Joint compression (JD-Full / JD-Diag) with clustering."},
    {"clusters", "Clusters", "Map of adapters coloured by cluster, and cluster sizes."},
    {"errors", "Errors", "Per-adapter error histogram and layer x module heat map."},
    {"serve", "Serve", "Local OpenAI-compatible server with live throughput and memory."},
};

QWidget* placeholder(const TabSpec& spec) {
    auto* w = new QWidget;
    auto* layout = new QVBoxLayout(w);
    auto* label = new QLabel(QStringLiteral("<h2>%1</h2><p>%2</p>").arg(spec.title, spec.blurb));
    label->setAlignment(Qt::AlignCenter);
    label->setWordWrap(true);
    layout->addWidget(label);
    return w;
}

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

} // namespace

MainWindow::MainWindow(QWidget* parent) : MainWindow(Options{}, parent) {}

MainWindow::MainWindow(Options options, QWidget* parent)
    : QMainWindow(parent), m_options(options), m_session(new Session(this)),
      m_demo(new DemoWorkspace(m_session, this)), m_recent(new RecentFiles(this)) {
    initResources();
    setWindowIcon(QIcon(":/icons/lorafleet.svg"));
    setAcceptDrops(true);
    m_tabs = new QTabWidget(this);
    m_tabs->setDocumentMode(true);
    for (const auto& spec : kTabs) {
        if (QLatin1String(spec.key) == QLatin1String("fleet")) {
            m_fleetView = new FleetView(m_session);
            m_tabs->addTab(m_fleetView, spec.title);
        } else {
            m_tabs->addTab(placeholder(spec), spec.title);
        }
    }
    setCentralWidget(m_tabs);
    m_statusBar = new MainStatusBar(m_session->host(), this);
    setStatusBar(m_statusBar);
    buildMenus();
    m_fleetView->setImportAction(m_importAction);

    Workspace* ws = m_session->workspace();
    connect(ws, &Workspace::dirtyChanged, this, &MainWindow::updateTitle);
    connect(ws, &Workspace::filePathChanged, this, &MainWindow::updateTitle);
    connect(m_session, &Session::operationFinished, m_statusBar, &MainStatusBar::setOperationText);
    connect(m_session, &Session::idle, this, &MainWindow::checkReady);
    connect(m_recent, &RecentFiles::changed, this, &MainWindow::rebuildRecentMenu);
    connect(m_fleetView, &FleetView::selectionCountChanged, this, &MainWindow::updateActions);
    connect(m_tabs, &QTabWidget::currentChanged, this, &MainWindow::updateActions);
    connect(m_fleetView->details(), &AdapterDetailsPane::normsReady, this, &MainWindow::checkReady);
    connect(m_demo, &DemoWorkspace::finished, this, [this](bool ok, const QString& message) {
        m_statusBar->setOperationText(message);
        if (ok) m_fleetView->selectFirstRowIfNone();
        checkReady();
    });

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
    QAction* quit = file->addAction(QStringLiteral("&Quit"), this, &QWidget::close);
    quit->setShortcuts(shortcutsFor(QKeySequence::Quit, Qt::CTRL | Qt::Key_Q));
    quit->setMenuRole(QAction::QuitRole);

    QMenu* edit = menuBar()->addMenu(QStringLiteral("&Edit"));
    m_findAction = edit->addAction(QStringLiteral("&Find Adapters"), this, [this] {
        showTab(QStringLiteral("fleet"));
        m_fleetView->focusFilter();
    });
    m_findAction->setShortcuts(shortcutsFor(QKeySequence::Find, Qt::CTRL | Qt::Key_F));
    m_removeAction = edit->addAction(style()->standardIcon(QStyle::SP_TrashIcon),
                                     QStringLiteral("&Remove Selected Adapters"), this,
                                     [this] { m_fleetView->removeSelected(); });
    m_removeAction->setShortcuts(shortcutsFor(QKeySequence::Delete, Qt::Key_Delete));
    m_removeAction->setToolTip(
        QStringLiteral("Remove the selected adapters from the fleet (files are not deleted)"));

    QMenu* view = menuBar()->addMenu(QStringLiteral("&View"));
    for (int i = 0; i < int(std::size(kTabs)); ++i) {
        const QString key = QString::fromLatin1(kTabs[i].key);
        view->addAction(QString::fromLatin1(kTabs[i].title), QKeySequence(Qt::CTRL | Qt::Key(Qt::Key_1 + i)),
                        this, [this, key] { showTab(key); });
    }

    QMenu* help = menuBar()->addMenu(QStringLiteral("&Help"));
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
    const QString dir = QFileDialog::getExistingDirectory(
        this, QStringLiteral("Import Adapters"), settings.value(kImportDirKey, QDir::homePath()).toString());
    if (dir.isEmpty()) return;
    settings.setValue(kImportDirKey, dir);
    showTab(QStringLiteral("fleet"));
    m_session->importPaths({dir});
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
    return !m_session->isBusy() && !m_demo->isRunning() && !m_fleetView->details()->normsPending();
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
    m_session->importPaths(paths);
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

void MainWindow::showAbout() {
    const auto cuda = kernels::probe_cuda_devices();
    const QString cudaText = cuda.compiled ? QString("CUDA runtime %1.%2")
                                                 .arg(cuda.runtime_version / 1000)
                                                 .arg((cuda.runtime_version % 1000) / 10)
                                           : QString("CUDA backend not compiled");
    QMessageBox::about(this, "About LoRA Fleet",
                       QString("<h3>LoRA Fleet %1</h3><p>Compress then serve thousands of LoRA adapters.</p>"
                               "<p>Qt %2, QCustomPlot %3, %4</p>")
                           .arg(LORAFLEET_VERSION, qVersion(), QCUSTOMPLOT_VERSION_STR, cudaText));
}

} // namespace lorafleet::ui
