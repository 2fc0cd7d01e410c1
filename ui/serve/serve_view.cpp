// ServeView (see serve_view.hpp).
#include "ui/serve/serve_view.hpp"

#include "engine/backend/device_registry.hpp"
#include "ui/common/device_combo.hpp"
#include "ui/common/elided_label.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/serve/serve_charts.hpp"
#include "ui/serve/serve_controller.hpp"
#include "ui/serve/serve_resources.hpp"
#include "ui/workspace/session.hpp"

#include <QAction>
#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFontDatabase>
#include <QFormLayout>
#include <QFrame>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QRandomGenerator>
#include <QRegularExpressionValidator>
#include <QSettings>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <cmath>

namespace lorafleet::ui {

namespace {

constexpr int kCoalesceMs = 40;
constexpr double kLiveDataSeconds = 3.0; // liveDataReady once the charts hold this much loaded time
constexpr double kMiB = 1024.0 * 1024.0;
constexpr int kMaxLoadAdapters = 1 << 20;
constexpr int kMaxThreads = 1024;
constexpr int kDefaultKvMiB = 64;
constexpr int kDefaultAdapterCacheMiB = 256;
// QSettings keys of the remembered server settings (never the API key).
const QString kDeviceKey = QStringLiteral("serve/device");
const QString kThreadsKey = QStringLiteral("serve/threads");
const QString kKvKey = QStringLiteral("serve/kvCacheMiB");
const QString kAdapterCacheKey = QStringLiteral("serve/adapterCacheMiB");

// 32 random bytes from the system's generator, base64url without padding (43 characters).
QString randomApiKey() {
    QByteArray bytes(32, Qt::Uninitialized);
    QRandomGenerator::system()->fillRange(reinterpret_cast<quint32*>(bytes.data()), bytes.size() / 4);
    return QString::fromLatin1(
        bytes.toBase64(QByteArray::Base64UrlEncoding | QByteArray::OmitTrailingEquals));
}

QLabel* tile(QWidget* parent, QGridLayout* grid, int column, const QString& caption) {
    auto* frame = new QFrame(parent);
    frame->setFrameShape(QFrame::StyledPanel);
    frame->setStyleSheet(QStringLiteral("QFrame { background: #f7f9fb; border: 1px solid #d8dee6; "
                                        "border-radius: 4px; }"));
    auto* box = new QVBoxLayout(frame);
    box->setContentsMargins(10, 4, 10, 4);
    box->setSpacing(0);
    auto* value = new QLabel(QStringLiteral("–"), frame);
    QFont big = value->font();
    big.setPointSize(big.pointSize() + 6);
    big.setBold(true);
    value->setFont(big);
    value->setStyleSheet(QStringLiteral("border: none; color: #1f3b57;"));
    auto* text = new QLabel(caption, frame);
    text->setStyleSheet(QStringLiteral("border: none; color: #5b6b7b;"));
    box->addWidget(value);
    box->addWidget(text);
    grid->addWidget(frame, 0, column);
    return value;
}

QString number(double v, int decimals) {
    return QLocale().toString(v, 'f', decimals);
}

} // namespace

ServeView::ServeView(Session* session, QWidget* parent)
    : QWidget(parent), m_session(session),
      m_controller(new ServeController(session ? session->host() : nullptr, this)) {
    m_replot.setSingleShot(true);
    m_replot.setInterval(kCoalesceMs);
    connect(&m_replot, &QTimer::timeout, this, &ServeView::rebuild);

    m_startAction = new QAction(tr("&Start Server"), this);
    m_startAction->setObjectName(QStringLiteral("startServerAction"));
    m_startAction->setShortcut(QKeySequence(Qt::Key_F5));
    m_startAction->setShortcutContext(Qt::ApplicationShortcut);
    m_startAction->setToolTip(tr("Start serving the chosen adapters (Serve tab)"));
    connect(m_startAction, &QAction::triggered, this, &ServeView::startServer);
    m_stopAction = new QAction(tr("S&top Server"), this);
    m_stopAction->setObjectName(QStringLiteral("stopServerAction"));
    m_stopAction->setShortcut(QKeySequence(Qt::SHIFT | Qt::Key_F5));
    m_stopAction->setShortcutContext(Qt::ApplicationShortcut);
    m_stopAction->setToolTip(tr("Stop the server (in-flight requests are cancelled)"));
    connect(m_stopAction, &QAction::triggered, this, &ServeView::stopServer);

    auto* left = new QWidget(this);
    auto* leftLayout = new QVBoxLayout(left);
    leftLayout->setContentsMargins(0, 0, 0, 0);
    leftLayout->addWidget(buildServerBox());
    leftLayout->addWidget(buildLoadBox());
    auto* tableBox = new QGroupBox(tr("Traffic by adapter"), left);
    auto* tableLayout = new QVBoxLayout(tableBox);
    m_table = new QTableWidget(0, 6, tableBox);
    m_table->setObjectName(QStringLiteral("adapterTable"));
    m_table->setHorizontalHeaderLabels(
        {tr("Adapter"), tr("Req"), tr("In tok"), tr("Out tok"), tr("p50 ms"), tr("p99 ms")});
    m_table->verticalHeader()->setVisible(false);
    m_table->verticalHeader()->setDefaultSectionSize(20);
    m_table->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
    for (int c = 1; c < 6; ++c)
        m_table->horizontalHeader()->setSectionResizeMode(c, QHeaderView::ResizeToContents);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setAlternatingRowColors(true);
    m_table->setToolTip(tr("Completed requests per adapter since the server started; latency is end to end "
                           "over each adapter's recent requests"));
    tableLayout->addWidget(m_table);
    leftLayout->addWidget(tableBox, 1);

    auto* right = new QWidget(this);
    auto* rightLayout = new QVBoxLayout(right);
    rightLayout->setContentsMargins(0, 0, 0, 0);
    rightLayout->addWidget(buildTiles());
    m_charts = new ServeCharts(right);
    rightLayout->addWidget(m_charts, 1);

    auto* splitter = new QSplitter(Qt::Horizontal, this);
    splitter->addWidget(left);
    splitter->addWidget(right);
    splitter->setStretchFactor(0, 0);
    splitter->setStretchFactor(1, 1);
    splitter->setSizes({460, 1040});
    auto* layout = new QHBoxLayout(this);
    layout->setContentsMargins(6, 6, 6, 6);
    layout->addWidget(splitter);

    connect(m_controller, &ServeController::stateChanged, this, &ServeView::onStateChanged);
    connect(m_controller, &ServeController::sampled, this, &ServeView::onSampled);
    connect(m_controller, &ServeController::failed, this, [this](const QString& reason) {
        setStatus(tr("Could not start: %1").arg(oneLine(reason)), true);
    });
    connect(m_controller, &ServeController::started, this, [this](int) {
        showSkipped();
        updateLoadLimit();
        if (m_demoPending) {
            m_demoPending = false;
            setLoadSettings(demoLoadSettings());
            startLoad();
        }
    });
    connect(m_controller, &ServeController::loadFinished, this, &ServeView::updateButtons);
    if (m_session) {
        connect(m_session, &Session::bankChanged, this, &ServeView::refreshAdapterChoices);
        connect(m_session->store(), &FleetStore::fleetChanged, this, &ServeView::refreshAdapterChoices);
    }

    setModelDir(demoModelDir());
    restoreSettings();
    refreshAdapterChoices();
    onStateChanged();
}

ServeView::~ServeView() = default; // the controller (a child) tears a running server down

QWidget* ServeView::buildServerBox() {
    auto* box = new QGroupBox(tr("Server"), this);
    auto* form = new QFormLayout(box);
    form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);

    m_model = new QLineEdit(box);
    m_model->setPlaceholderText(tr("HuggingFace model folder"));
    auto* browse = new QPushButton(tr("Browse…"), box);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Model folder"), m_model->text());
        if (!dir.isEmpty()) m_model->setText(dir);
    });
    auto* modelRow = new QHBoxLayout;
    modelRow->addWidget(m_model, 1);
    modelRow->addWidget(browse);
    form->addRow(tr("Model"), modelRow);

    m_source = new QComboBox(box);
    m_source->setObjectName(QStringLiteral("adapterSource"));
    m_source->addItem(QString(), int(Source::Bank));
    m_source->addItem(QString(), int(Source::WorkspaceAdapters));
    m_source->addItem(tr("Other PEFT adapter folders…"), int(Source::RawFolders));
    m_source->addItem(tr("Base model only"), int(Source::BaseOnly));
    m_source->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_source->setMinimumContentsLength(24);
    form->addRow(tr("Adapters"), m_source);

    m_subset = new QComboBox(box);
    m_subset->setObjectName(QStringLiteral("adapterSubset"));
    m_subset->setToolTip(tr("Which of the workspace's adapters to serve: all, the adapters selected in the "
                            "Fleet table, or the members of one cluster of the compressed bank"));
    m_subset->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_subset->setMinimumContentsLength(24);
    form->addRow(tr("Serve"), m_subset);

    m_folders = new QLineEdit(box);
    m_folders->setPlaceholderText(tr("adapter folders, separated by ;"));
    m_addFolder = new QPushButton(tr("Add…"), box);
    connect(m_addFolder, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Adapter folder"));
        if (dir.isEmpty()) return;
        QString text = m_folders->text().trimmed();
        m_folders->setText(text.isEmpty() ? dir : text + QStringLiteral(";") + dir);
    });
    auto* folderRow = new QHBoxLayout;
    folderRow->addWidget(m_folders, 1);
    folderRow->addWidget(m_addFolder);
    form->addRow(tr("Folders"), folderRow);
    connect(m_source, &QComboBox::currentIndexChanged, this, [this] {
        refreshAdapterChoices();
        updateButtons();
    });

    m_device = new DeviceCombo(box);
    m_device->setObjectName(QStringLiteral("serveDevice"));
    form->addRow(tr("Device"), m_device);
    m_deviceInfo = new ElidedLabel(Qt::ElideRight, box);
    m_deviceInfo->setObjectName(QStringLiteral("serveDeviceInfo"));
    m_deviceInfo->setStyleSheet(QStringLiteral("color: #5b6b7b;"));
    m_deviceInfo->setElidedText(m_device->description());
    form->addRow(QString(), m_deviceInfo);

    m_port = new QSpinBox(box);
    m_port->setRange(0, 65535);
    m_port->setSpecialValueText(tr("any free port"));
    m_port->setValue(0);
    m_port->setToolTip(tr("TCP port on 127.0.0.1 (only this machine can connect)"));
    m_threads = new QSpinBox(box);
    m_threads->setObjectName(QStringLiteral("serveThreads"));
    m_threads->setRange(0, kMaxThreads);
    m_threads->setSpecialValueText(tr("all"));
    m_threads->setToolTip(tr("Transformer threads on the CPU (all = one per hardware thread); "
                             "the GPU does not use them"));
    auto* portRow = new QHBoxLayout;
    portRow->addWidget(m_port, 1);
    portRow->addWidget(new QLabel(tr("Threads"), box));
    portRow->addWidget(m_threads, 1);
    form->addRow(tr("Port"), portRow);

    m_kv = new QSpinBox(box);
    m_kv->setObjectName(QStringLiteral("serveKvCache"));
    m_kv->setRange(1, 1 << 20);
    m_kv->setValue(kDefaultKvMiB);
    m_kv->setSuffix(tr(" MiB"));
    m_kv->setToolTip(tr("KV cache budget of the running batch (on the GPU when serving there)"));
    m_adapterCache = new QSpinBox(box);
    m_adapterCache->setObjectName(QStringLiteral("serveAdapterCache"));
    m_adapterCache->setRange(1, 1 << 24);
    m_adapterCache->setValue(kDefaultAdapterCacheMiB);
    m_adapterCache->setSuffix(tr(" MiB"));
    m_adapterCache->setToolTip(tr("Raw PEFT adapters: MiB of adapter weights kept resident (least recently "
                                  "used ones are dropped and reloaded on demand); a bank needs no cache"));
    auto* cacheRow = new QHBoxLayout;
    cacheRow->addWidget(m_kv, 1);
    cacheRow->addWidget(new QLabel(tr("Adapter cache"), box));
    cacheRow->addWidget(m_adapterCache, 1);
    form->addRow(tr("KV cache"), cacheRow);

    m_apiKey = new QLineEdit(box);
    m_apiKey->setObjectName(QStringLiteral("serveApiKey"));
    m_apiKey->setEchoMode(QLineEdit::Password);
    m_apiKey->setPlaceholderText(tr("none"));
    m_apiKey->setValidator(
        new QRegularExpressionValidator(QRegularExpression(QStringLiteral("[\\x21-\\x7e]*")), m_apiKey));
    m_apiKey->setToolTip(tr("Optional: when set, every request but /health needs the header "
                            "'Authorization: Bearer KEY' (401 otherwise). Kept in memory only: never saved "
                            "with the workspace or the settings."));
    m_copyKey = new QPushButton(tr("Copy"), box);
    m_copyKey->setToolTip(tr("Copy the API key to the clipboard"));
    connect(m_copyKey, &QPushButton::clicked, this,
            [this] { QApplication::clipboard()->setText(m_apiKey->text()); });
    m_newKey = new QPushButton(tr("New"), box);
    m_newKey->setToolTip(tr("Make a new random API key (256 bits)"));
    connect(m_newKey, &QPushButton::clicked, this, [this] { setApiKey(randomApiKey()); });
    connect(m_apiKey, &QLineEdit::textChanged, this, &ServeView::updateButtons);
    auto* keyRow = new QHBoxLayout;
    keyRow->addWidget(m_apiKey, 1);
    keyRow->addWidget(m_copyKey);
    keyRow->addWidget(m_newKey);
    form->addRow(tr("API key"), keyRow);

    for (QSpinBox* spin : {m_threads, m_kv, m_adapterCache})
        connect(spin, &QSpinBox::valueChanged, this, &ServeView::saveSettings);
    connect(m_device, &QComboBox::currentIndexChanged, this, &ServeView::saveSettings);

    m_start = new QPushButton(tr("Start server"), box);
    m_stop = new QPushButton(tr("Stop"), box);
    m_start->setObjectName(QStringLiteral("startServer"));
    m_stop->setObjectName(QStringLiteral("stopServer"));
    m_start->setToolTip(tr("Start serving (F5)"));
    m_stop->setToolTip(tr("Stop serving (Shift+F5)"));
    connect(m_start, &QPushButton::clicked, this, &ServeView::startServer);
    connect(m_stop, &QPushButton::clicked, this, &ServeView::stopServer);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_start, 1);
    buttons->addWidget(m_stop);
    form->addRow(buttons);

    m_status = new QLabel(box);
    m_status->setObjectName(QStringLiteral("serveStatus"));
    m_status->setWordWrap(true);
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    form->addRow(m_status);
    m_skipped = new QLabel(box);
    m_skipped->setObjectName(QStringLiteral("skippedAdapters"));
    m_skipped->setWordWrap(true);
    m_skipped->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_skipped->setStyleSheet(QStringLiteral("color: #9a6700;"));
    m_skipped->setVisible(false);
    form->addRow(m_skipped);

    m_endpoint = new QLabel(box);
    m_endpoint->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_copyCurl = new QPushButton(tr("Copy curl"), box);
    m_copyCurl->setToolTip(tr("Copy the example request to the clipboard"));
    connect(m_copyCurl, &QPushButton::clicked, this,
            [this] { QApplication::clipboard()->setText(m_curl->toPlainText()); });
    auto* endpointRow = new QHBoxLayout;
    endpointRow->addWidget(m_endpoint, 1);
    endpointRow->addWidget(m_copyCurl);
    form->addRow(tr("Endpoint"), endpointRow);
    m_curl = new QPlainTextEdit(box);
    m_curl->setObjectName(QStringLiteral("curlExample"));
    m_curl->setReadOnly(true);
    QFont mono = QFontDatabase::systemFont(QFontDatabase::FixedFont);
    mono.setPointSize(std::max(7, mono.pointSize() - 1));
    m_curl->setFont(mono);
    m_curl->setFixedHeight(78);
    m_curl->setLineWrapMode(QPlainTextEdit::WidgetWidth);
    form->addRow(m_curl);
    return box;
}

QWidget* ServeView::buildLoadBox() {
    auto* box = new QGroupBox(tr("Load generator"), this);
    auto* grid = new QGridLayout(box);
    m_rate = new QDoubleSpinBox(box);
    m_rate->setRange(0.1, 10000);
    m_rate->setDecimals(1);
    m_rate->setSuffix(tr(" req/s"));
    m_rate->setToolTip(tr("Mean arrival rate (Poisson)"));
    m_loadAdapters = new QSpinBox(box);
    m_loadAdapters->setObjectName(QStringLiteral("loadAdapters"));
    m_loadAdapters->setRange(0, kMaxLoadAdapters);
    m_loadAdapters->setSpecialValueText(tr("base model"));
    m_loadAdapters->setToolTip(tr("Requests are spread uniformly over this many of the served adapters "
                                  "(the first ones by name); at most as many as are served"));
    connect(m_loadAdapters, &QSpinBox::valueChanged, this, [this](int v) {
        if (!m_loadAdapters->signalsBlocked()) m_wantedLoadAdapters = v;
    });
    m_loadNote = new QLabel(box);
    m_loadNote->setObjectName(QStringLiteral("loadAdaptersNote"));
    m_loadNote->setStyleSheet(QStringLiteral("color: #5b6b7b;"));
    m_duration = new QSpinBox(box);
    m_duration->setRange(1, 24 * 3600);
    m_duration->setSuffix(tr(" s"));
    m_maxTokens = new QSpinBox(box);
    m_maxTokens->setRange(1, 4096);
    m_maxTokens->setSuffix(tr(" tok"));
    m_maxTokens->setToolTip(tr("Completion tokens per request (EOS ignored)"));
    auto* adaptersRow = new QHBoxLayout;
    adaptersRow->addWidget(m_loadAdapters, 1);
    adaptersRow->addWidget(m_loadNote);
    grid->addWidget(new QLabel(tr("Rate"), box), 0, 0);
    grid->addWidget(m_rate, 0, 1);
    grid->addWidget(new QLabel(tr("Adapters"), box), 0, 2);
    grid->addLayout(adaptersRow, 0, 3);
    grid->addWidget(new QLabel(tr("Duration"), box), 1, 0);
    grid->addWidget(m_duration, 1, 1);
    grid->addWidget(new QLabel(tr("Max tokens"), box), 1, 2);
    grid->addWidget(m_maxTokens, 1, 3);
    m_startLoad = new QPushButton(tr("Start load"), box);
    m_stopLoad = new QPushButton(tr("Stop load"), box);
    connect(m_startLoad, &QPushButton::clicked, this, &ServeView::startLoad);
    connect(m_stopLoad, &QPushButton::clicked, this, &ServeView::stopLoad);
    grid->addWidget(m_startLoad, 2, 0, 1, 2);
    grid->addWidget(m_stopLoad, 2, 2, 1, 2);
    m_tally = new QLabel(box);
    m_tally->setObjectName(QStringLiteral("loadTally"));
    m_tally->setWordWrap(true);
    m_tally->setStyleSheet(QStringLiteral("color: #5b6b7b;"));
    grid->addWidget(m_tally, 3, 0, 1, 4);
    setLoadSettings(LoadSettings{});
    return box;
}

QWidget* ServeView::buildTiles() {
    auto* strip = new QWidget(this);
    auto* grid = new QGridLayout(strip);
    grid->setContentsMargins(0, 0, 0, 0);
    grid->setSpacing(6);
    m_tileTokens = tile(strip, grid, 0, tr("output tokens/s"));
    m_tileRequests = tile(strip, grid, 1, tr("requests/s"));
    m_tileBatch = tile(strip, grid, 2, tr("running / queued"));
    m_tileCompleted = tile(strip, grid, 3, tr("completed"));
    m_tileLatency = tile(strip, grid, 4, tr("e2e p99"));
    m_tileMemory = tile(strip, grid, 5, tr("process RSS"));
    return strip;
}

QCustomPlot* ServeView::throughputPlot() const {
    return m_charts->throughputPlot();
}
QCustomPlot* ServeView::latencyPlot() const {
    return m_charts->latencyPlot();
}
QCustomPlot* ServeView::memoryPlot() const {
    return m_charts->memoryPlot();
}
QCustomPlot* ServeView::adaptersPlot() const {
    return m_charts->adaptersPlot();
}

LoadSettings ServeView::demoLoadSettings() {
    LoadSettings s;
    s.rate = 12;
    s.adapters = 24;
    s.duration_s = 600;
    s.max_tokens = 48;
    return s;
}

void ServeView::startDemoLoad() {
    const QString model = demoModelDir();
    if (!model.isEmpty()) setModelDir(model);
    setSource(m_session && m_session->bank() ? Source::Bank : Source::BaseOnly);
    setSubset(AdapterChoice::Subset::All);
    setPort(0);
    m_demoPending = true;
    startServer();
}

void ServeView::setModelDir(const QString& dir) {
    m_model->setText(dir);
}
QString ServeView::modelDir() const {
    return m_model->text();
}
void ServeView::setSource(Source source) {
    m_source->setCurrentIndex(m_source->findData(int(source)));
}
ServeView::Source ServeView::source() const {
    return Source(m_source->currentData().toInt());
}
void ServeView::setAdapterFolders(const QStringList& folders) {
    m_folders->setText(folders.join(QLatin1Char(';')));
}
void ServeView::setSubset(AdapterChoice::Subset subset, int cluster) {
    refreshAdapterChoices();
    for (int i = 0; i < m_subset->count(); ++i) {
        const QVariantList key = m_subset->itemData(i).toList();
        if (AdapterChoice::Subset(key.value(0).toInt()) == subset &&
            (subset != AdapterChoice::Subset::Cluster || key.value(1).toInt() == cluster)) {
            m_subset->setCurrentIndex(i);
            return;
        }
    }
}
void ServeView::setSelectionProvider(std::function<QStringList()> provider) {
    m_selection = std::move(provider);
    refreshAdapterChoices();
}
void ServeView::setPort(int port) {
    m_port->setValue(port);
}
void ServeView::setDevice(const QString& device) {
    m_device->setDevice(device);
}
QString ServeView::device() const {
    return m_device->device();
}
void ServeView::setThreads(int threads) {
    m_threads->setValue(threads);
}
int ServeView::threads() const {
    return m_threads->value();
}
void ServeView::setKvCacheMiB(int mib) {
    m_kv->setValue(mib);
}
int ServeView::kvCacheMiB() const {
    return m_kv->value();
}
void ServeView::setAdapterCacheMiB(int mib) {
    m_adapterCache->setValue(mib);
}
int ServeView::adapterCacheMiB() const {
    return m_adapterCache->value();
}
void ServeView::setApiKey(const QString& key) {
    m_apiKey->setText(key);
}
QString ServeView::apiKey() const {
    return m_apiKey->text();
}
QString ServeView::deviceText() const {
    return m_deviceInfo->text();
}

void ServeView::restoreSettings() {
    const QSettings settings;
    m_restoring = true;
    m_device->setDevice(settings.value(kDeviceKey, QStringLiteral("auto")).toString());
    m_threads->setValue(settings.value(kThreadsKey, 0).toInt());
    m_kv->setValue(settings.value(kKvKey, kDefaultKvMiB).toInt());
    m_adapterCache->setValue(settings.value(kAdapterCacheKey, kDefaultAdapterCacheMiB).toInt());
    m_restoring = false;
}

void ServeView::saveSettings() const {
    if (m_restoring) return;
    QSettings settings;
    settings.setValue(kDeviceKey, m_device->device());
    settings.setValue(kThreadsKey, m_threads->value());
    settings.setValue(kKvKey, m_kv->value());
    settings.setValue(kAdapterCacheKey, m_adapterCache->value());
}

// The engine's device note in the tab's words: "cpu" -> "CPU", "cpu (auto: no usable CUDA device: ...)" ->
// "CPU (no usable CUDA device: ...)", "cuda" / "cuda (auto)" -> "GPU (NVIDIA H200)".
QString ServeView::deviceStatus() const {
    QString why = m_controller->deviceNote();
    const int open = why.indexOf(QLatin1Char('('));
    why = open < 0 ? QString() : why.mid(open + 1).chopped(why.endsWith(QLatin1Char(')')) ? 1 : 0);
    if (why.startsWith(QLatin1String("auto: "))) why = why.mid(6);
    if (m_controller->device() == QLatin1String("cuda")) {
        const auto& report = backend::devices();
        return report.devices.empty()
                   ? tr("GPU")
                   : tr("GPU (%1)").arg(QString::fromStdString(report.devices.front().name));
    }
    return why.isEmpty() ? tr("CPU") : tr("CPU (%1)").arg(oneLine(why, 200));
}
QString ServeView::statusText() const {
    return m_status->text();
}
QString ServeView::curlExample() const {
    return m_curl->toPlainText();
}
QString ServeView::skippedText() const {
    return m_skipped->text();
}
QString ServeView::loadNote() const {
    return m_loadNote->text();
}
QString ServeView::tallyText() const {
    return m_tally->text();
}
QString ServeView::tallyToolTip() const {
    return m_tally->toolTip();
}
QStringList ServeView::tileTexts() const {
    QStringList out;
    for (QLabel* l :
         {m_tileTokens, m_tileRequests, m_tileBatch, m_tileCompleted, m_tileLatency, m_tileMemory})
        out << l->text();
    return out;
}

void ServeView::setLoadSettings(const LoadSettings& s) {
    m_rate->setValue(s.rate);
    m_wantedLoadAdapters = s.adapters;
    {
        const QSignalBlocker block(m_loadAdapters);
        m_loadAdapters->setValue(s.adapters); // clamped to the served adapters while running
    }
    m_duration->setValue(int(std::lround(s.duration_s)));
    m_maxTokens->setValue(s.max_tokens);
    m_maxInFlight = s.max_in_flight;
    updateLoadLimit();
}

LoadSettings ServeView::loadSettings() const {
    LoadSettings s;
    s.rate = m_rate->value();
    s.adapters = m_loadAdapters->value();
    s.duration_s = m_duration->value();
    s.max_tokens = m_maxTokens->value();
    s.max_in_flight = m_maxInFlight;
    return s;
}

// While running, the Adapters box goes up to the number served (asking for more shows the maximum and
// says so); stopped, it keeps what was asked for.
void ServeView::updateLoadLimit() {
    const bool running = m_controller->state() == ServeController::State::Running;
    const int served = int(m_controller->adapterNames().size());
    const QSignalBlocker block(m_loadAdapters);
    m_loadAdapters->setMaximum(running ? served : kMaxLoadAdapters);
    m_loadAdapters->setValue(running ? std::min(m_wantedLoadAdapters, served) : m_wantedLoadAdapters);
    if (!running) {
        m_loadNote->clear();
    } else if (served == 0) {
        m_loadNote->setText(tr("no adapter served"));
    } else if (m_wantedLoadAdapters > served) {
        m_loadNote->setText(tr("only %1 served").arg(formatCount(served)));
        m_loadNote->setStyleSheet(QStringLiteral("color: #9a6700; font-weight: bold;"));
        return;
    } else {
        m_loadNote->setText(tr("of %1 served").arg(formatCount(served)));
    }
    m_loadNote->setStyleSheet(QStringLiteral("color: #5b6b7b;"));
}

void ServeView::setStatus(const QString& text, bool error) {
    m_status->setText(text);
    m_status->setStyleSheet(error ? QStringLiteral("color: #c0392b; font-weight: bold;") : QString());
}

void ServeView::showEvent(QShowEvent* event) {
    QWidget::showEvent(event);
    refreshAdapterChoices(); // the Fleet selection may have changed while another tab was shown
    // The GPU's free memory now (this creates the CUDA context in the console on a GPU machine: the tab
    // that serves on it is being looked at; a no-op without a usable GPU).
    m_device->refresh(DeviceCombo::FreeMemory::AskFree);
    m_deviceInfo->setElidedText(m_device->description());
}

void ServeView::refreshAdapterChoices() {
    const auto bank = m_session ? m_session->bank() : nullptr;
    const int imported = m_session ? m_session->store()->size() : 0;
    m_source->setItemText(m_source->findData(int(Source::Bank)),
                          bank
                              ? tr("Workspace bank (%1, rank %2, %3)")
                                    .arg(plural(qint64(bank->adapters.size()), tr("adapter"), tr("adapters")))
                                    .arg(bank->rank)
                                    .arg(plural(bank->clusters, tr("cluster"), tr("clusters")))
                              : tr("Workspace bank (none yet: compress the fleet)"));
    m_source->setItemText(m_source->findData(int(Source::WorkspaceAdapters)),
                          tr("Workspace adapters, raw (%1 imported)").arg(formatCount(imported)));

    const QVariant current = m_subset->currentData();
    const QSignalBlocker block(m_subset);
    m_subset->clear();
    const int all = source() == Source::Bank && bank ? int(bank->adapters.size()) : imported;
    m_subset->addItem(tr("All adapters (%1)").arg(formatCount(all)),
                      QVariantList{int(AdapterChoice::Subset::All), -1});
    const int selected = m_selection ? int(m_selection().size()) : 0;
    m_subset->addItem(tr("Fleet table selection (%1)").arg(formatCount(selected)),
                      QVariantList{int(AdapterChoice::Subset::Selection), -1});
    if (bank) {
        const std::vector<int> sizes = clusterSizes(*bank);
        for (int c = 0; c < int(sizes.size()); ++c)
            m_subset->addItem(tr("Cluster %1 (%2)")
                                  .arg(c)
                                  .arg(plural(sizes[std::size_t(c)], tr("adapter"), tr("adapters"))),
                              QVariantList{int(AdapterChoice::Subset::Cluster), c});
    }
    const int index = m_subset->findData(current);
    m_subset->setCurrentIndex(std::max(0, index));
}

AdapterChoice ServeView::currentChoice() const {
    AdapterChoice choice;
    const QVariantList key = m_subset->currentData().toList();
    choice.subset = AdapterChoice::Subset(key.value(0).toInt());
    choice.cluster = key.value(1).toInt();
    if (choice.subset == AdapterChoice::Subset::Selection && m_selection) choice.selection = m_selection();
    return choice;
}

void ServeView::startServer() {
    if (m_controller->state() != ServeController::State::Stopped) return;
    ServeConfig config;
    config.modelDir = m_model->text().trimmed();
    config.port = m_port->value();
    config.kvCacheMiB = m_kv->value();
    config.adapterCacheMiB = m_adapterCache->value();
    config.threads = m_threads->value();
    config.device = m_device->device();
    config.apiKey = m_apiKey->text();
    const auto bank = m_session ? m_session->bank() : nullptr;
    const AdapterChoice choice = currentChoice();
    const bool everything = choice.subset == AdapterChoice::Subset::All;
    auto refuse = [this](const QString& why) { setStatus(tr("Could not start: %1").arg(why), true); };
    switch (source()) {
    case Source::Bank:
        config.source = ServeConfig::Source::Bank;
        config.bank = bank;
        if (bank && !everything) {
            const QStringList names = chooseFromBank(*bank, choice);
            if (names.isEmpty())
                return refuse(choice.subset == AdapterChoice::Subset::Selection
                                  ? tr("none of the adapters selected in the Fleet table is in the bank")
                                  : tr("the chosen cluster has no adapter"));
            config.bank = bankSubset(*bank, names);
        }
        break;
    case Source::WorkspaceAdapters:
        config.source = ServeConfig::Source::RawFolders;
        config.adapterFolders =
            m_session ? chooseFolders(m_session->store()->entries(), choice, bank.get()) : QStringList();
        if (config.adapterFolders.isEmpty())
            return refuse(everything ? tr("the workspace has no imported adapter: import some first")
                          : choice.subset == AdapterChoice::Subset::Selection
                              ? tr("no adapter is selected in the Fleet table")
                              : tr("no imported adapter is in the chosen cluster"));
        break;
    case Source::RawFolders:
        config.source = ServeConfig::Source::RawFolders;
        for (const QString& f : m_folders->text().split(QLatin1Char(';'), Qt::SkipEmptyParts))
            if (!f.trimmed().isEmpty()) config.adapterFolders << f.trimmed();
        break;
    case Source::BaseOnly:
        config.source = ServeConfig::Source::BaseOnly;
        break;
    }
    m_liveDataSent = false;
    m_loadStartedAt = -1;
    m_skipped->clear();
    m_skipped->setVisible(false);
    m_controller->start(config);
}

void ServeView::stopServer() {
    m_demoPending = false;
    m_controller->stop();
}

void ServeView::resetForNewWorkspace() {
    stopServer(); // it serves the old workspace's adapters
    m_controller->clearHistory();
    m_skipped->clear();
    m_skipped->setVisible(false);
    m_tally->clear();
    m_tally->setToolTip(QString());
    m_liveDataSent = false;
    m_loadStartedAt = -1;
    if (m_controller->state() == ServeController::State::Stopped) setStatus(tr("Stopped."));
    refreshAdapterChoices();
    refreshNow();
}

void ServeView::showSkipped() {
    const QList<SkippedAdapter> skipped = m_controller->skippedAdapters();
    if (skipped.isEmpty()) {
        m_skipped->clear();
        m_skipped->setToolTip(QString());
        m_skipped->setVisible(false);
        return;
    }
    QStringList lines, full; // the label cuts long reasons; its tooltip has them whole
    for (const SkippedAdapter& s : skipped) {
        const QString name = s.name.isEmpty() ? tr("no adapter") : s.name;
        lines << tr("• %1 (%2): %3").arg(name, s.folder, oneLine(s.reason, 200));
        full << tr("%1 (%2): %3").arg(name, s.folder, oneLine(s.reason, 2000));
    }
    m_skipped->setToolTip(full.join(QLatin1Char('\n')));
    m_skipped->setText(
        tr("Skipped %1 (not served):\n%2")
            .arg(plural(skipped.size(), tr("adapter"), tr("adapters")), lines.join(QLatin1Char('\n'))));
    m_skipped->setVisible(true);
}

void ServeView::startLoad() {
    QString error;
    if (!m_controller->startLoad(loadSettings(), &error)) {
        m_tally->setText(tr("Load not started: %1").arg(oneLine(error)));
        return;
    }
    m_loadStartedAt = m_controller->history().empty() ? 0 : m_controller->history().last().t;
    updateButtons();
}

void ServeView::stopLoad() {
    m_controller->stopLoad();
    updateButtons();
}

void ServeView::updateButtons() {
    const auto state = m_controller->state();
    const bool stopped = state == ServeController::State::Stopped;
    const bool running = state == ServeController::State::Running;
    m_start->setEnabled(stopped);
    m_stop->setEnabled(running);
    m_startAction->setEnabled(stopped);
    m_stopAction->setEnabled(running);
    for (QWidget* w : std::initializer_list<QWidget*>{m_model, m_source, m_device, m_port, m_threads, m_kv,
                                                      m_apiKey, m_newKey})
        w->setEnabled(stopped);
    m_copyKey->setEnabled(!m_apiKey->text().isEmpty());
    const Source src = source();
    const bool typed = src == Source::RawFolders;
    m_adapterCache->setEnabled(stopped && (typed || src == Source::WorkspaceAdapters));
    m_folders->setEnabled(stopped && typed);
    m_addFolder->setEnabled(stopped && typed);
    m_subset->setEnabled(stopped && (src == Source::Bank || src == Source::WorkspaceAdapters));
    const bool loading = m_controller->isLoadRunning();
    m_startLoad->setEnabled(running && !loading);
    m_stopLoad->setEnabled(running && loading);
    m_copyCurl->setEnabled(running);
}

void ServeView::onStateChanged() {
    using State = ServeController::State;
    switch (m_controller->state()) {
    case State::Stopped:
        if (m_controller->lastError().isEmpty()) setStatus(tr("Stopped."));
        m_endpoint->setText(tr("not serving"));
        m_curl->setPlainText(QString());
        break;
    case State::Starting:
        setStatus(tr("Starting: loading the model and the adapters…"));
        break;
    case State::Running: {
        const int port = m_controller->port();
        const QStringList names = m_controller->adapterNames();
        setStatus(tr("Serving %1 with %2 (%3 mode) on %4.%5")
                      .arg(m_controller->modelName(), plural(names.size(), tr("adapter"), tr("adapters")),
                           m_controller->adapterMode(), deviceStatus(),
                           m_controller->requiresApiKey() ? tr(" Requests need the API key.") : QString()));
        const QString url = QStringLiteral("http://127.0.0.1:%1").arg(port);
        m_endpoint->setText(QStringLiteral("<a href=\"%1/health\">%1</a>").arg(url));
        m_endpoint->setOpenExternalLinks(true);
        const QString model = names.isEmpty() ? m_controller->modelName() : names.first();
        // The key never appears in clear: the example reads it from the environment.
        const QString auth = m_controller->requiresApiKey()
                                 ? QStringLiteral("-H \"Authorization: Bearer $LORAFLEET_API_KEY\" ")
                                 : QString();
        m_curl->setPlainText(QStringLiteral("curl %1/v1/completions %3-H 'Content-Type: application/json' "
                                            "-d '{\"model\": \"%2\", \"prompt\": \"Once upon a time\", "
                                            "\"max_tokens\": 32}'")
                                 .arg(url, model, auth));
        m_curl->setToolTip(m_controller->requiresApiKey()
                               ? tr("Set LORAFLEET_API_KEY to the server's API key first (its Copy button)")
                               : QString());
        break;
    }
    case State::Stopping:
        setStatus(tr("Stopping: cancelling in-flight requests…"));
        break;
    }
    // The hit-rate line only where a cache exists; after Stop the last run's charts stay as they were.
    if (m_controller->state() == State::Running)
        m_charts->setCacheShown(m_controller->hasAdapterCache());
    else if (m_controller->history().empty())
        m_charts->setCacheShown(false);
    updateLoadLimit();
    updateTiles();
    updateButtons();
}

void ServeView::onSampled() {
    if (!m_replot.isActive()) m_replot.start();
}

void ServeView::refreshNow() {
    m_replot.stop();
    rebuild();
}

void ServeView::rebuild() {
    const ServeHistory& h = m_controller->history();
    m_charts->rebuild(h);
    rebuildTable();
    updateTiles();
    updateButtons();

    const auto& samples = h.samples();
    if (!m_liveDataSent && m_loadStartedAt >= 0 && !samples.empty() && m_controller->isLoadRunning() &&
        samples.back().t - std::max(m_loadStartedAt, samples.front().t) >= kLiveDataSeconds &&
        samples.back().completed > 0) {
        m_liveDataSent = true;
        emit liveDataReady();
    }
}

void ServeView::rebuildTable() {
    const auto& snapshot = m_controller->lastSnapshot();
    if (!snapshot) {
        m_table->setRowCount(0);
        return;
    }
    const auto& rows = snapshot->per_adapter;
    m_table->setUpdatesEnabled(false);
    m_table->setRowCount(int(rows.size()));
    auto cell = [&](int r, int c, const QString& text, bool numeric) {
        QTableWidgetItem* item = m_table->item(r, c);
        if (!item) {
            item = new QTableWidgetItem;
            if (numeric) item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
            m_table->setItem(r, c, item);
        }
        if (item->text() != text) item->setText(text);
    };
    for (int r = 0; r < int(rows.size()); ++r) {
        const auto& a = rows[std::size_t(r)];
        cell(r, 0, a.name.empty() ? tr("(base model)") : QString::fromStdString(a.name), false);
        cell(r, 1, formatCount(qint64(a.requests)), true);
        cell(r, 2, formatCount(qint64(a.prompt_tokens)), true);
        cell(r, 3, formatCount(qint64(a.completion_tokens)), true);
        cell(r, 4, number(a.p50_s * 1e3, 0), true);
        cell(r, 5, number(a.p99_s * 1e3, 0), true);
    }
    m_table->setUpdatesEnabled(true);
}

void ServeView::updateTiles() {
    const ServeHistory& h = m_controller->history();
    if (h.empty() || m_controller->state() != ServeController::State::Running) {
        for (QLabel* l :
             {m_tileTokens, m_tileRequests, m_tileBatch, m_tileCompleted, m_tileLatency, m_tileMemory})
            l->setText(QStringLiteral("–"));
    } else {
        const ServeSample& s = h.last();
        m_tileTokens->setText(number(s.tokensPerS, 0));
        m_tileRequests->setText(number(s.requestsPerS, 1));
        m_tileBatch->setText(QStringLiteral("%1 / %2").arg(s.running).arg(s.queued));
        m_tileCompleted->setText(formatCount(qint64(s.completed)));
        m_tileLatency->setText(formatDuration(qint64(std::llround(s.e2eP99Ms))));
        m_tileMemory->setText(formatBytes(quint64(s.rssMiB * kMiB)));
    }
    if (const auto tally = m_controller->loadTally()) {
        const int inFlight = m_maxInFlight;
        m_tally->setText(
            tr("%1 · submitted %2 · completed %3 · in flight %4 · dropped %5%6 · failed %7%8")
                .arg(m_controller->isLoadRunning() ? tr("Running") : tr("Finished"))
                .arg(formatCount(qint64(tally->submitted)))
                .arg(formatCount(qint64(tally->completed)))
                .arg(formatCount(qint64(tally->outstanding())))
                .arg(formatCount(qint64(tally->dropped)))
                .arg(tally->dropped ? tr(" (not sent: %1 already in flight)").arg(formatCount(inFlight))
                                    : QString())
                .arg(formatCount(qint64(tally->failed + tally->rejected)))
                .arg(tally->firstError.empty()
                         ? QString()
                         : tr(" (%1)").arg(oneLine(QString::fromStdString(tally->firstError), 120))));
        m_tally->setToolTip(
            tr("dropped: arrivals the generator did not send because %1 of its requests were still in flight "
               "(the engine serves fewer requests per second than the rate offers). A dropped arrival is "
               "never submitted, so it is not a failed or lost request.")
                .arg(formatCount(inFlight)));
    }
}

} // namespace lorafleet::ui
