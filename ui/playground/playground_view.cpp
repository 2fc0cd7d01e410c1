// PlaygroundView (see playground_view.hpp).
#include "ui/playground/playground_view.hpp"

#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/playground/playground_diff.hpp"
#include "ui/serve/serve_resources.hpp"
#include "ui/workspace/session.hpp"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QKeySequence>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QMap>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QShortcut>
#include <QSpinBox>
#include <QTextCharFormat>
#include <QTextCursor>
#include <QTextEdit>
#include <QThread>
#include <QVBoxLayout>

#include <algorithm>

namespace lorafleet::ui {

namespace {

const QColor kDiffBackground(0xfd, 0xe2, 0xb8); // the divergent tail

struct AdapterSource {
    QString folder; // imported PEFT folder ("" = not in the fleet)
    bool inBank = false;
};

} // namespace

PlaygroundView::PlaygroundView(Session* session, QWidget* parent)
    : QWidget(parent), m_session(session),
      m_runner(new PlaygroundRunner(session ? session->host() : nullptr, this)) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(8, 8, 8, 8);

    auto* controls = new QGridLayout;
    m_adapter = new QComboBox(this);
    m_adapter->setObjectName(QStringLiteral("playgroundAdapter"));
    m_adapter->setMinimumContentsLength(24);
    m_adapter->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_adapter->setToolTip(tr("An adapter of the workspace: raw needs its imported PEFT folder, compressed "
                             "needs the workspace's bank"));
    m_model = new QLineEdit(this);
    m_model->setPlaceholderText(tr("HuggingFace model folder"));
    auto* browse = new QPushButton(tr("Browse…"), this);
    connect(browse, &QPushButton::clicked, this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(this, tr("Model folder"), m_model->text());
        if (!dir.isEmpty()) m_model->setText(dir);
    });
    m_maxTokens = new QSpinBox(this);
    m_maxTokens->setRange(1, 4096);
    m_maxTokens->setValue(64);
    m_maxTokens->setSuffix(tr(" tok"));
    m_temperature = new QDoubleSpinBox(this);
    m_temperature->setRange(0, 5);
    m_temperature->setSingleStep(0.1);
    m_temperature->setDecimals(2);
    m_temperature->setValue(0);
    m_temperature->setSpecialValueText(tr("0 (greedy)"));
    m_temperature->setToolTip(tr("0 = greedy: the highlight of where compressed and raw part needs greedy "
                                 "outputs (the same seed is used for every column)"));
    m_run = new QPushButton(tr("Run"), this);
    m_run->setObjectName(QStringLiteral("playgroundRun"));
    m_run->setToolTip(tr("Generate in every column (Ctrl+Return)"));
    m_stop = new QPushButton(tr("Stop"), this);
    connect(m_run, &QPushButton::clicked, this, &PlaygroundView::run);
    connect(m_stop, &QPushButton::clicked, this, &PlaygroundView::stop);
    auto* shortcut = new QShortcut(QKeySequence(Qt::CTRL | Qt::Key_Return), this);
    connect(shortcut, &QShortcut::activated, this, &PlaygroundView::run);

    controls->addWidget(new QLabel(tr("Adapter"), this), 0, 0);
    controls->addWidget(m_adapter, 0, 1);
    controls->addWidget(new QLabel(tr("Max tokens"), this), 0, 2);
    controls->addWidget(m_maxTokens, 0, 3);
    controls->addWidget(new QLabel(tr("Temperature"), this), 0, 4);
    controls->addWidget(m_temperature, 0, 5);
    controls->addWidget(m_run, 0, 6);
    controls->addWidget(m_stop, 0, 7);
    controls->addWidget(new QLabel(tr("Model"), this), 1, 0);
    auto* modelRow = new QHBoxLayout;
    modelRow->addWidget(m_model, 1);
    modelRow->addWidget(browse);
    controls->addLayout(modelRow, 1, 1, 1, 7);
    controls->setColumnStretch(1, 1);
    layout->addLayout(controls);

    m_prompt = new QPlainTextEdit(this);
    m_prompt->setObjectName(QStringLiteral("playgroundPrompt"));
    m_prompt->setPlaceholderText(tr("Prompt, e.g. Once upon a time"));
    m_prompt->setPlainText(QStringLiteral("Once upon a time"));
    m_prompt->setFixedHeight(64);
    layout->addWidget(m_prompt);

    m_status = new QLabel(this);
    m_status->setWordWrap(true);
    layout->addWidget(m_status);

    auto* columns = new QHBoxLayout;
    const QString titles[kPlaygroundColumns] = {tr("Raw adapter (PEFT folder)"),
                                                tr("Compressed (workspace bank)"), tr("Base model")};
    for (int c = 0; c < kPlaygroundColumns; ++c) {
        auto* box = new QVBoxLayout;
        Column& col = m_columns[std::size_t(c)];
        col.title = new QLabel(QStringLiteral("<b>%1</b>").arg(titles[c]), this);
        col.text = new QTextEdit(this);
        col.text->setReadOnly(true);
        col.text->setAcceptRichText(false);
        col.text->setObjectName(QStringLiteral("playgroundOutput%1").arg(c));
        col.status = new QLabel(this);
        col.status->setWordWrap(true);
        col.status->setStyleSheet(QStringLiteral("color: #5b6b7b;"));
        box->addWidget(col.title);
        box->addWidget(col.text, 1);
        box->addWidget(col.status);
        columns->addLayout(box, 1);
    }
    layout->addLayout(columns, 1);
    m_diff = new QLabel(this);
    m_diff->setObjectName(QStringLiteral("playgroundDiff"));
    m_diff->setWordWrap(true);
    layout->addWidget(m_diff);

    connect(m_runner, &PlaygroundRunner::textAppended, this, &PlaygroundView::onText);
    connect(m_runner, &PlaygroundRunner::columnFinished, this, &PlaygroundView::onColumnFinished);
    connect(m_runner, &PlaygroundRunner::finished, this, &PlaygroundView::onFinished);
    if (m_session) {
        connect(m_session, &Session::bankChanged, this, &PlaygroundView::refreshAdapters);
        connect(m_session->store(), &FleetStore::fleetChanged, this, &PlaygroundView::refreshAdapters);
    }
    m_model->setText(demoModelDir());
    refreshAdapters();
    updateButtons();
}

PlaygroundView::~PlaygroundView() = default; // the runner (a child) cancels and joins a run

void PlaygroundView::showEvent(QShowEvent* event) {
    QWidget::showEvent(event);
    refreshAdapters();
}

// Every adapter of the fleet (by the name the bank uses) and of the bank, sorted; the item data holds
// the PEFT folder and whether the bank has it.
void PlaygroundView::refreshAdapters() {
    QMap<QString, AdapterSource> sources;
    if (m_session) {
        for (const FleetEntry& e : m_session->store()->entries())
            sources[QString::fromStdString(e.adapter->name)].folder = e.summary.dir;
        if (const auto bank = m_session->bank())
            for (const auto& a : bank->adapters)
                sources[QString::fromStdString(a.name)].inBank = true;
    }
    const QString current = m_adapter->currentText();
    const QSignalBlocker block(m_adapter);
    m_adapter->clear();
    m_adapter->addItem(tr("(base model only)"), QVariantList{QString(), false});
    for (auto it = sources.cbegin(); it != sources.cend(); ++it)
        m_adapter->addItem(it.key(), QVariantList{it->folder, it->inBank});
    const int index = m_adapter->findText(current);
    m_adapter->setCurrentIndex(index >= 0 ? index : (m_adapter->count() > 1 ? 1 : 0));
}

QStringList PlaygroundView::adapterNames() const {
    QStringList out;
    for (int i = 1; i < m_adapter->count(); ++i)
        out << m_adapter->itemText(i);
    return out;
}

bool PlaygroundView::setAdapter(const QString& name) {
    refreshAdapters();
    const int index = name.isEmpty() ? 0 : m_adapter->findText(name);
    if (index < 0) return false;
    m_adapter->setCurrentIndex(index);
    return true;
}
QString PlaygroundView::currentAdapter() const {
    return m_adapter->currentIndex() <= 0 ? QString() : m_adapter->currentText();
}
void PlaygroundView::setModelDir(const QString& dir) {
    m_model->setText(dir);
}
void PlaygroundView::setPrompt(const QString& text) {
    m_prompt->setPlainText(text);
}
void PlaygroundView::setMaxTokens(int n) {
    m_maxTokens->setValue(n);
}
void PlaygroundView::setTemperature(double t) {
    m_temperature->setValue(t);
}
QString PlaygroundView::outputText(PlaygroundColumn column) const {
    return m_columns[std::size_t(column)].text->toPlainText();
}
QString PlaygroundView::columnStatus(PlaygroundColumn column) const {
    return m_columns[std::size_t(column)].status->text();
}
QString PlaygroundView::diffText() const {
    return m_diff->text();
}
QString PlaygroundView::statusText() const {
    return m_status->text();
}

bool PlaygroundView::run() {
    if (m_runner->isRunning()) return false;
    const QVariantList data = m_adapter->currentData().toList();
    const QString name = m_adapter->currentIndex() > 0 ? m_adapter->currentText() : QString();
    const QString folder = data.value(0).toString();
    const bool inBank = data.value(1).toBool();
    const auto bank = m_session ? m_session->bank() : nullptr;

    PlaygroundRequest req;
    req.modelDir = m_model->text().trimmed();
    req.adapter = name;
    req.rawFolder = folder;
    req.bank = inBank ? bank : nullptr;
    req.prompt = m_prompt->toPlainText();
    req.maxTokens = m_maxTokens->value();
    req.temperature = m_temperature->value();
    req.threads = std::max(1, QThread::idealThreadCount() / 3);

    m_unavailable = {};
    if (name.isEmpty()) {
        m_unavailable[0] = m_unavailable[1] = tr("No adapter chosen.");
    } else {
        if (folder.isEmpty())
            m_unavailable[0] =
                tr("No PEFT folder for %1 in this workspace (import it to compare).").arg(name);
        if (!bank)
            m_unavailable[1] = tr("The workspace has no compressed bank yet: compress the fleet first.");
        else if (!inBank)
            m_unavailable[1] = tr("%1 is not in the bank (imported after the last compression).").arg(name);
    }
    QString error;
    if (!m_runner->run(req, &error)) {
        m_status->setText(tr("Cannot run: %1").arg(error));
        m_status->setStyleSheet(QStringLiteral("color: #c0392b; font-weight: bold;"));
        return false;
    }
    m_greedy = req.temperature == 0;
    m_highlight = {-1, -1};
    m_status->setStyleSheet(QString());
    m_status->setText(name.isEmpty() ? tr("Generating with the base model…")
                                     : tr("Generating with %1…").arg(name));
    m_diff->clear();
    for (int c = 0; c < kPlaygroundColumns; ++c) {
        m_columns[std::size_t(c)].text->clear();
        updateColumnStatus(PlaygroundColumn(c));
    }
    updateButtons();
    return true;
}

void PlaygroundView::stop() {
    m_runner->cancel();
}

void PlaygroundView::onText(PlaygroundColumn column, const QString& piece) {
    QTextEdit* edit = m_columns[std::size_t(column)].text;
    QTextCursor cursor(edit->document());
    cursor.movePosition(QTextCursor::End);
    cursor.insertText(piece);
    updateColumnStatus(column);
}

void PlaygroundView::onColumnFinished(PlaygroundColumn column) {
    const PlaygroundOutput& out = m_runner->output(column);
    QTextEdit* edit = m_columns[std::size_t(column)].text;
    if (out.error.isEmpty() && edit->toPlainText() != out.text) edit->setPlainText(out.text);
    updateColumnStatus(column);
    showDiff();
}

void PlaygroundView::onFinished(bool ok, const QString& message) {
    for (int c = 0; c < kPlaygroundColumns; ++c)
        updateColumnStatus(PlaygroundColumn(c));
    m_status->setStyleSheet(ok ? QString() : QStringLiteral("color: #c0392b; font-weight: bold;"));
    m_status->setText(ok ? tr("Done.") : tr("Stopped: %1").arg(oneLine(message)));
    showDiff();
    updateButtons();
    emit runFinished();
}

void PlaygroundView::updateColumnStatus(PlaygroundColumn column) {
    const int c = int(column);
    const PlaygroundOutput& out = m_runner->output(column);
    QLabel* status = m_columns[std::size_t(c)].status;
    if (!out.requested) {
        status->setText(m_unavailable[std::size_t(c)]);
        return;
    }
    if (!out.done) {
        const double s = m_runner->elapsedSeconds();
        status->setText(
            out.pieces ? tr("streaming… %1 pieces, %2 s").arg(out.pieces).arg(QLocale().toString(s, 'f', 1))
                       : tr("waiting…"));
        return;
    }
    if (!out.error.isEmpty()) {
        status->setText(tr("Failed: %1").arg(oneLine(out.error, 200)));
        return;
    }
    status->setText(tr("%1 · %2 tokens/s · %3")
                        .arg(plural(qint64(out.tokens.size()), tr("token"), tr("tokens")))
                        .arg(QLocale().toString(out.tokensPerS(), 'f', 1))
                        .arg(formatDuration(qint64(out.seconds * 1e3))));
}

// Once raw and compressed both finished greedy: highlight the compressed (and raw) text from the first
// character where they differ, and say at which token they part.
void PlaygroundView::showDiff() {
    const PlaygroundOutput& raw = m_runner->output(PlaygroundColumn::Raw);
    const PlaygroundOutput& comp = m_runner->output(PlaygroundColumn::Compressed);
    if (!raw.requested || !comp.requested || !raw.done || !comp.done || !raw.error.isEmpty() ||
        !comp.error.isEmpty()) {
        if (raw.requested && comp.requested && raw.done && comp.done) m_diff->clear();
        return;
    }
    if (!m_greedy) {
        m_diff->setText(
            tr("Sampled outputs (temperature > 0) differ by chance: the divergence highlight needs "
               "temperature 0."));
        return;
    }
    const qsizetype token = firstDifferentToken(raw.tokens, comp.tokens);
    const qsizetype at = firstDifference(raw.text, comp.text);
    if (token < 0 && at < 0) {
        m_diff->setText(tr("Compressed and raw greedy outputs are identical (%1).")
                            .arg(plural(qint64(raw.tokens.size()), tr("token"), tr("tokens"))));
        m_highlight = {-1, -1};
        return;
    }
    m_diff->setText(tr("Compressed departs from raw at token %1 of %2 (highlighted from character %3).")
                        .arg(token + 1)
                        .arg(qint64(std::max(raw.tokens.size(), comp.tokens.size())))
                        .arg(at + 1));
    QTextCharFormat mark;
    mark.setBackground(kDiffBackground);
    for (PlaygroundColumn column : {PlaygroundColumn::Raw, PlaygroundColumn::Compressed}) {
        QTextEdit* edit = m_columns[std::size_t(column)].text;
        QTextCursor cursor(edit->document());
        const int length = int(edit->toPlainText().size());
        if (at >= length) continue;
        cursor.setPosition(int(at));
        cursor.setPosition(length, QTextCursor::KeepAnchor);
        cursor.mergeCharFormat(mark);
        if (column == PlaygroundColumn::Compressed) m_highlight = {int(at), length};
    }
}

void PlaygroundView::updateButtons() {
    const bool running = m_runner->isRunning();
    m_run->setEnabled(!running);
    m_stop->setEnabled(running);
}

} // namespace lorafleet::ui
