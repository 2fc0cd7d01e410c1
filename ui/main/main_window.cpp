#include "ui/main/main_window.hpp"

#include "kernels/device_probe.hpp"

#include <QApplication>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QStatusBar>
#include <QTabWidget>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <thread>

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
    auto* label = new QLabel(QString("<h2>%1</h2><p>%2</p>").arg(spec.title, spec.blurb));
    label->setAlignment(Qt::AlignCenter);
    label->setWordWrap(true);
    layout->addWidget(label);
    return w;
}

QString backendSummary() {
    const auto cuda = kernels::probe_cuda_devices();
    const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    if (cuda.available && !cuda.devices.empty()) {
        const auto& d = cuda.devices.front();
        return QString("GPU: %1 (%2 MiB)").arg(QString::fromStdString(d.name)).arg(d.memory_mb);
    }
    return QString("CPU, %1 threads - GPU unavailable: %2")
        .arg(threads)
        .arg(QString::fromStdString(cuda.reason));
}

} // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setWindowTitle("LoRA Fleet");
    setWindowIcon(QIcon(":/icons/lorafleet.svg"));
    m_tabs = new QTabWidget(this);
    for (const auto& spec : kTabs)
        m_tabs->addTab(placeholder(spec), spec.title);
    setCentralWidget(m_tabs);
    m_backendLabel = new QLabel(backendSummary(), this);
    statusBar()->addPermanentWidget(m_backendLabel);
    statusBar()->showMessage("Ready");
    buildMenus();
    resize(1280, 800);
}

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
    QMenu* file = menuBar()->addMenu("&File");
    file->addAction("&Quit", QKeySequence::Quit, this, &QWidget::close);
    QMenu* help = menuBar()->addMenu("&Help");
    help->addAction("&About LoRA Fleet", this, &MainWindow::showAbout);
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
