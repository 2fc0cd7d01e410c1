// ServeView (see serve_view.hpp).
#include "ui/serve/serve_view.hpp"

#include "ui/common/plot_style.hpp"
#include "ui/common/text_format.hpp"
#include "ui/serve/serve_controller.hpp"
#include "ui/serve/serve_resources.hpp"
#include "ui/workspace/session.hpp"

#include <QApplication>
#include <QClipboard>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
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
constexpr double kMinSpanSeconds = 5.0;  // the time axis spans at least this much
constexpr double kMiB = 1024.0 * 1024.0;

// Tableau 10: the palette the other tabs use.
const QColor kBlue(0x4e, 0x79, 0xa7), kOrange(0xf2, 0x8e, 0x2b), kRed(0xe1, 0x57, 0x59),
    kTeal(0x76, 0xb7, 0xb2), kGreen(0x59, 0xa1, 0x4f), kYellow(0xed, 0xc9, 0x48), kPurple(0xb0, 0x7a, 0xa1),
    kGrey(0xba, 0xb0, 0xac);

QCPGraph* addLine(QCustomPlot* plot, const QString& name, const QColor& color,
                  Qt::PenStyle style = Qt::SolidLine, QCPAxis* valueAxis = nullptr) {
    QCPGraph* g = plot->addGraph(plot->xAxis, valueAxis ? valueAxis : plot->yAxis);
    g->setName(name);
    g->setPen(QPen(color, 2, style));
    return g;
}

// A one-line legend between the title and the axes, so it never hides the newest data.
void setupLegend(QCustomPlot* plot) {
    plot->legend->setVisible(true);
    plot->legend->setFont(plotFont(-2, 7));
    plot->legend->setBrush(Qt::NoBrush);
    plot->legend->setBorderPen(Qt::NoPen);
    plot->legend->setFillOrder(QCPLayoutGrid::foColumnsFirst);
    plot->legend->setColumnSpacing(12);
    plot->legend->setMargins(QMargins(4, 0, 4, 0));
    plot->axisRect()->insetLayout()->take(plot->legend);
    plot->plotLayout()->insertRow(1);
    plot->plotLayout()->addElement(1, 0, plot->legend);
    plot->plotLayout()->setRowStretchFactor(1, 0.001);
    plot->legend->setMaximumSize(QWIDGETSIZE_MAX, 22);
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
    auto* charts = new QGridLayout;
    charts->setSpacing(6);
    m_throughput = new QCustomPlot(right);
    m_latency = new QCustomPlot(right);
    m_memory = new QCustomPlot(right);
    m_adapters = new QCustomPlot(right);
    m_throughput->setObjectName(QStringLiteral("throughputPlot"));
    m_latency->setObjectName(QStringLiteral("latencyPlot"));
    m_memory->setObjectName(QStringLiteral("memoryPlot"));
    m_adapters->setObjectName(QStringLiteral("adaptersPlot"));
    charts->addWidget(m_throughput, 0, 0);
    charts->addWidget(m_latency, 0, 1);
    charts->addWidget(m_memory, 1, 0);
    charts->addWidget(m_adapters, 1, 1);
    rightLayout->addLayout(charts, 1);
    setupPlots();

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
        if (m_demoPending) {
            m_demoPending = false;
            setLoadSettings(demoLoadSettings());
            startLoad();
        }
    });
    connect(m_controller, &ServeController::loadFinished, this, &ServeView::updateButtons);
    if (m_session) connect(m_session, &Session::bankChanged, this, &ServeView::updateSourceText);

    setModelDir(demoModelDir());
    updateSourceText();
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
    m_source->addItem(QString(), int(Source::Bank));
    m_source->addItem(tr("Raw PEFT adapter folders"), int(Source::RawFolders));
    m_source->addItem(tr("Base model only"), int(Source::BaseOnly));
    form->addRow(tr("Adapters"), m_source);

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
        const bool raw = Source(m_source->currentData().toInt()) == Source::RawFolders;
        m_folders->setEnabled(raw && m_controller->state() == ServeController::State::Stopped);
        m_addFolder->setEnabled(m_folders->isEnabled());
    });

    m_port = new QSpinBox(box);
    m_port->setRange(0, 65535);
    m_port->setSpecialValueText(tr("any free port"));
    m_port->setValue(0);
    m_kv = new QSpinBox(box);
    m_kv->setRange(1, 1 << 16);
    m_kv->setValue(64);
    m_kv->setSuffix(tr(" MiB"));
    m_kv->setToolTip(tr("KV cache budget of the running batch"));
    auto* portRow = new QHBoxLayout;
    portRow->addWidget(m_port, 1);
    portRow->addWidget(new QLabel(tr("KV"), box));
    portRow->addWidget(m_kv, 1);
    form->addRow(tr("Port"), portRow);

    m_start = new QPushButton(tr("Start server"), box);
    m_stop = new QPushButton(tr("Stop"), box);
    m_start->setObjectName(QStringLiteral("startServer"));
    m_stop->setObjectName(QStringLiteral("stopServer"));
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
    m_loadAdapters->setRange(0, 1 << 20);
    m_loadAdapters->setSpecialValueText(tr("base model"));
    m_loadAdapters->setToolTip(tr("Requests are spread uniformly over this many adapters"));
    m_duration = new QSpinBox(box);
    m_duration->setRange(1, 24 * 3600);
    m_duration->setSuffix(tr(" s"));
    m_maxTokens = new QSpinBox(box);
    m_maxTokens->setRange(1, 4096);
    m_maxTokens->setSuffix(tr(" tok"));
    m_maxTokens->setToolTip(tr("Completion tokens per request (EOS ignored)"));
    grid->addWidget(new QLabel(tr("Rate"), box), 0, 0);
    grid->addWidget(m_rate, 0, 1);
    grid->addWidget(new QLabel(tr("Adapters"), box), 0, 2);
    grid->addWidget(m_loadAdapters, 0, 3);
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

void ServeView::setupPlots() {
    for (QCustomPlot* p : {m_throughput, m_latency, m_memory, m_adapters}) {
        p->setMinimumSize(320, 200);
        p->setNotAntialiasedElements(QCP::aeAll);
        p->setAntialiasedElements(QCP::aePlottables);
        styleAxis(p->xAxis, tr("time since start (s)"), -1, -1);
    }
    addTitle(m_throughput, tr("Throughput"));
    styleAxis(m_throughput->yAxis, tr("tokens/s"), -1, -1);
    styleAxis(m_throughput->yAxis2, tr("requests/s"), -1, -1);
    m_throughput->yAxis2->setVisible(true);
    addLine(m_throughput, tr("output tokens/s"), kBlue);
    addLine(m_throughput, tr("prompt tokens/s"), kTeal, Qt::DashLine);
    addLine(m_throughput, tr("requests/s (right)"), kOrange, Qt::SolidLine, m_throughput->yAxis2);

    addTitle(m_latency, tr("Latency percentiles"));
    styleAxis(m_latency->yAxis, tr("ms"), -1, -1);
    addLine(m_latency, tr("TTFT p50"), kGreen);
    addLine(m_latency, tr("TTFT p99"), kGreen, Qt::DashLine);
    addLine(m_latency, tr("e2e p50"), kPurple);
    addLine(m_latency, tr("e2e p99"), kPurple, Qt::DashLine);

    addTitle(m_memory, tr("Memory by kind (stacked)"));
    styleAxis(m_memory->yAxis, tr("MiB"), -1, -1);
    const QList<QPair<QString, QColor>> layers = {{tr("weights"), kBlue},
                                                  {tr("KV cache in use"), kOrange},
                                                  {tr("adapters"), kGreen},
                                                  {tr("other (process)"), kGrey}};
    QCPGraph* below = nullptr;
    for (const auto& [name, color] : layers) {
        QCPGraph* g = m_memory->addGraph();
        g->setName(name);
        g->setPen(QPen(color.darker(120), 1));
        QColor fill = color;
        fill.setAlpha(170);
        g->setBrush(fill);
        if (below) g->setChannelFillGraph(below);
        below = g;
    }

    addTitle(m_adapters, tr("Adapters"));
    styleAxis(m_adapters->yAxis, tr("active adapters (last 2 s)"), -1, -1);
    styleAxis(m_adapters->yAxis2, tr("cache hit rate %"), -1, -1);
    m_adapters->yAxis2->setVisible(true);
    m_adapters->yAxis2->setRange(0, 105);
    addLine(m_adapters, tr("active adapters"), kBlue);
    addLine(m_adapters, tr("cache hit rate % (right)"), kRed, Qt::SolidLine, m_adapters->yAxis2);
    for (QCustomPlot* p : {m_throughput, m_latency, m_memory, m_adapters})
        setupLegend(p); // after the titles: rows are title, legend, axes
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
void ServeView::setAdapterFolders(const QStringList& folders) {
    m_folders->setText(folders.join(QLatin1Char(';')));
}
void ServeView::setPort(int port) {
    m_port->setValue(port);
}
QString ServeView::statusText() const {
    return m_status->text();
}
QString ServeView::curlExample() const {
    return m_curl->toPlainText();
}

void ServeView::setLoadSettings(const LoadSettings& s) {
    m_rate->setValue(s.rate);
    m_loadAdapters->setValue(s.adapters);
    m_duration->setValue(int(std::lround(s.duration_s)));
    m_maxTokens->setValue(s.max_tokens);
}

LoadSettings ServeView::loadSettings() const {
    LoadSettings s;
    s.rate = m_rate->value();
    s.adapters = m_loadAdapters->value();
    s.duration_s = m_duration->value();
    s.max_tokens = m_maxTokens->value();
    return s;
}

void ServeView::setStatus(const QString& text, bool error) {
    m_status->setText(text);
    m_status->setStyleSheet(error ? QStringLiteral("color: #c0392b; font-weight: bold;") : QString());
}

void ServeView::updateSourceText() {
    const auto bank = m_session ? m_session->bank() : nullptr;
    m_source->setItemText(
        0, bank ? tr("Workspace bank (%1, rank %2, %3)")
                      .arg(plural(qint64(bank->adapters.size()), tr("adapter"), tr("adapters")))
                      .arg(bank->rank)
                      .arg(plural(bank->clusters, tr("cluster"), tr("clusters")))
                : tr("Workspace bank (none yet: compress the fleet)"));
}

void ServeView::startServer() {
    if (m_controller->state() != ServeController::State::Stopped) return;
    ServeConfig config;
    config.modelDir = m_model->text().trimmed();
    config.source = ServeConfig::Source(m_source->currentData().toInt());
    config.bank = m_session ? m_session->bank() : nullptr;
    for (const QString& f : m_folders->text().split(QLatin1Char(';'), Qt::SkipEmptyParts))
        if (!f.trimmed().isEmpty()) config.adapterFolders << f.trimmed();
    config.port = m_port->value();
    config.kvCacheMiB = m_kv->value();
    m_liveDataSent = false;
    m_loadStartedAt = -1;
    m_controller->start(config);
}

void ServeView::stopServer() {
    m_demoPending = false;
    m_controller->stop();
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
    for (QWidget* w : std::initializer_list<QWidget*>{m_model, m_source, m_port, m_kv})
        w->setEnabled(stopped);
    const bool raw = Source(m_source->currentData().toInt()) == Source::RawFolders;
    m_folders->setEnabled(stopped && raw);
    m_addFolder->setEnabled(stopped && raw);
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
        setStatus(tr("Serving %1 with %2 (%3 mode).")
                      .arg(m_controller->modelName(), plural(names.size(), tr("adapter"), tr("adapters")),
                           m_controller->adapterMode()));
        const QString url = QStringLiteral("http://127.0.0.1:%1").arg(port);
        m_endpoint->setText(QStringLiteral("<a href=\"%1/health\">%1</a>").arg(url));
        m_endpoint->setOpenExternalLinks(true);
        const QString model = names.isEmpty() ? m_controller->modelName() : names.first();
        m_curl->setPlainText(QStringLiteral("curl %1/v1/completions -H 'Content-Type: application/json' "
                                            "-d '{\"model\": \"%2\", \"prompt\": \"Once upon a time\", "
                                            "\"max_tokens\": 32}'")
                                 .arg(url, model));
        break;
    }
    case State::Stopping:
        setStatus(tr("Stopping: cancelling in-flight requests…"));
        break;
    }
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
    const auto& samples = h.samples();
    const int n = int(samples.size());
    QVector<double> t(n);
    std::vector<QVector<double>> series(15, QVector<double>(n));
    for (int i = 0; i < n; ++i) {
        const ServeSample& s = samples[std::size_t(i)];
        t[i] = s.t;
        const double stack0 = s.weightsMiB, stack1 = stack0 + s.kvMiB, stack2 = stack1 + s.adaptersMiB,
                     stack3 = stack2 + s.otherMiB;
        const double values[] = {s.tokensPerS,     s.promptTokensPerS,
                                 s.requestsPerS,   s.ttftP50Ms,
                                 s.ttftP99Ms,      s.e2eP50Ms,
                                 s.e2eP99Ms,       stack0,
                                 stack1,           stack2,
                                 stack3,           double(s.activeAdapters),
                                 s.hitRate * 100.0};
        for (int k = 0; k < 13; ++k)
            series[std::size_t(k)][i] = values[k];
    }
    auto set = [&](QCustomPlot* plot, int graph, int k) {
        plot->graph(graph)->setData(t, series[std::size_t(k)], true);
    };
    set(m_throughput, 0, 0);
    set(m_throughput, 1, 1);
    set(m_throughput, 2, 2);
    for (int g = 0; g < 4; ++g)
        set(m_latency, g, 3 + g);
    for (int g = 0; g < 4; ++g)
        set(m_memory, g, 7 + g);
    set(m_adapters, 0, 11);
    set(m_adapters, 1, 12);

    if (n) { // the stacked layers are hard to read off the axis: their sizes go in the legend
        const ServeSample& s = samples.back();
        const double sizes[] = {s.weightsMiB, s.kvMiB, s.adaptersMiB, s.otherMiB};
        const QString names[] = {tr("weights"), tr("KV in use"), tr("adapters"), tr("other")};
        for (int g = 0; g < 4; ++g)
            m_memory->graph(g)->setName(
                QStringLiteral("%1 %2").arg(names[g], formatBytes(quint64(sizes[g] * kMiB))));
    }
    const double last = n ? t.back() : 0;
    const double first = std::max(0.0, last - h.windowSeconds());
    const double right = std::max(first + kMinSpanSeconds, last);
    for (QCustomPlot* p : {m_throughput, m_latency, m_memory, m_adapters}) {
        p->xAxis->setRange(first, right);
        bool found = false;
        QCPRange r = p->graph(0)->getValueRange(found, QCP::sdBoth);
        for (int g = 1; g < p->graphCount(); ++g) {
            if (p->graph(g)->valueAxis() != p->yAxis) continue;
            bool f = false;
            const QCPRange gr = p->graph(g)->getValueRange(f, QCP::sdBoth);
            if (f) r = found ? QCPRange(std::min(r.lower, gr.lower), std::max(r.upper, gr.upper)) : gr;
            found = found || f;
        }
        p->yAxis->setRange(0, found && r.upper > 0 ? r.upper * 1.15 : 1.0);
    }
    bool found = false;
    const QCPRange rr = m_throughput->graph(2)->getValueRange(found, QCP::sdBoth);
    m_throughput->yAxis2->setRange(0, found && rr.upper > 0 ? rr.upper * 1.15 : 1.0);
    for (QCustomPlot* p : {m_throughput, m_latency, m_memory, m_adapters})
        p->replot(QCustomPlot::rpQueuedReplot);

    rebuildTable();
    updateTiles();
    updateButtons();

    if (!m_liveDataSent && m_loadStartedAt >= 0 && n && m_controller->isLoadRunning() &&
        t.back() - std::max(m_loadStartedAt, t.front()) >= kLiveDataSeconds && samples.back().completed > 0) {
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
    if (h.empty()) {
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
    if (const auto tally = m_controller->loadTally())
        m_tally->setText(
            tr("%1 · submitted %2 · completed %3 · in flight %4 · dropped %5 · failed %6%7")
                .arg(m_controller->isLoadRunning() ? tr("Running") : tr("Finished"))
                .arg(formatCount(qint64(tally->submitted)))
                .arg(formatCount(qint64(tally->completed)))
                .arg(formatCount(qint64(tally->outstanding())))
                .arg(formatCount(qint64(tally->dropped)))
                .arg(formatCount(qint64(tally->failed + tally->rejected)))
                .arg(tally->firstError.empty()
                         ? QString()
                         : tr(" (%1)").arg(oneLine(QString::fromStdString(tally->firstError), 120))));
}

} // namespace lorafleet::ui
