// FleetView (see fleet_view.hpp).
#include "ui/fleet/fleet_view.hpp"

#include "engine/io/hf_config.hpp"
#include "ui/common/text_format.hpp"
#include "ui/fleet/adapter_details_pane.hpp"
#include "ui/fleet/fleet_model.hpp"
#include "ui/fleet/fleet_proxy_model.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/problem_model.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QAction>
#include <QApplication>
#include <QComboBox>
#include <QDataStream>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QIODevice>
#include <QItemSelection>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSplitter>
#include <QStackedWidget>
#include <QStyle>
#include <QTableView>
#include <QToolButton>
#include <QVBoxLayout>

namespace lorafleet::ui {

namespace {

constexpr quint32 kStateMagic = 0x4c464631; // "LFF1"
constexpr int kBrowseConfig = -2;           // combo item data: "choose a config.json"

void configureTable(QTableView* table) {
    table->setSelectionBehavior(QAbstractItemView::SelectRows);
    table->setAlternatingRowColors(true);
    table->setWordWrap(false);
    table->setCornerButtonEnabled(false);
    table->setHorizontalScrollMode(QAbstractItemView::ScrollPerPixel);
    table->verticalHeader()->hide();
    table->verticalHeader()->setSectionResizeMode(QHeaderView::Fixed);
    table->verticalHeader()->setDefaultSectionSize(table->fontMetrics().height() + 8);
    table->horizontalHeader()->setHighlightSections(false);
    table->horizontalHeader()->setStretchLastSection(true);
    table->horizontalHeader()->setSectionResizeMode(QHeaderView::Interactive);
}

} // namespace

FleetView::FleetView(Session* session, QWidget* parent)
    : QWidget(parent), m_session(session), m_model(new FleetModel(session->store(), this)),
      m_proxy(new FleetProxyModel(this)), m_problemModel(new ProblemModel(session->store(), this)) {
    m_proxy->setSourceModel(m_model);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(6, 6, 6, 0);
    layout->setSpacing(6);
    buildToolbar(layout);

    m_table = new QTableView;
    configureTable(m_table);
    m_table->setSelectionMode(QAbstractItemView::ExtendedSelection);
    m_table->setModel(m_proxy);
    m_table->setSortingEnabled(true);
    m_table->sortByColumn(FleetModel::Name, Qt::AscendingOrder);
    m_table->setTextElideMode(Qt::ElideMiddle);
    m_table->setIconSize(QSize(14, 14));
    applyDefaultColumnWidths();

    auto* empty = new QLabel(
        QStringLiteral(
            "<h3>No adapters yet</h3>"
            "<p>Drop PEFT adapter folders onto this window, or use <b>File \u25b8 Import Adapters\u2026</b>"
            " (%1).<br>Folders are searched recursively for <tt>adapter_config.json</tt>.</p>")
            .arg(QKeySequence(Qt::CTRL | Qt::Key_I).toString(QKeySequence::NativeText)));
    empty->setAlignment(Qt::AlignCenter);
    empty->setWordWrap(true);
    empty->setFrameShape(QFrame::StyledPanel);
    empty->setEnabled(false);
    m_tableStack = new QStackedWidget;
    m_tableStack->addWidget(empty);
    m_tableStack->addWidget(m_table);

    m_leftSplitter = new QSplitter(Qt::Vertical);
    m_leftSplitter->addWidget(m_tableStack);
    m_leftSplitter->addWidget(buildProblemsPane());
    m_leftSplitter->setStretchFactor(0, 4);
    m_leftSplitter->setStretchFactor(1, 1);
    m_leftSplitter->setChildrenCollapsible(false);

    m_details = new AdapterDetailsPane(session->host());
    m_mainSplitter = new QSplitter(Qt::Horizontal);
    m_mainSplitter->addWidget(m_leftSplitter);
    m_mainSplitter->addWidget(m_details);
    m_mainSplitter->setStretchFactor(0, 3);
    m_mainSplitter->setStretchFactor(1, 2);
    m_mainSplitter->setSizes({780, 480});
    m_mainSplitter->setChildrenCollapsible(false);
    layout->addWidget(m_mainSplitter, 1);

    connect(m_filter, &QLineEdit::textChanged, this, &FleetView::applyFilter);
    connect(m_table->selectionModel(), &QItemSelectionModel::selectionChanged, this,
            &FleetView::onSelectionChanged);
    connect(m_proxy, &QAbstractItemModel::rowsInserted, this, &FleetView::fitModulesColumn);
    connect(m_proxy, &QAbstractItemModel::modelReset, this, &FleetView::fitModulesColumn);
    connect(m_proxy, &QAbstractItemModel::rowsInserted, this, &FleetView::updateCounts);
    connect(m_proxy, &QAbstractItemModel::rowsRemoved, this, &FleetView::updateCounts);
    // A layout change or reset (filter edit, sort, scattered removal) can drop selected rows without a
    // selectionChanged signal: re-read the selection so the details pane never shows a hidden adapter.
    connect(m_proxy, &QAbstractItemModel::modelReset, this, &FleetView::onSelectionChanged);
    connect(m_proxy, &QAbstractItemModel::layoutChanged, this, &FleetView::onSelectionChanged);
    connect(session->store(), &FleetStore::problemsChanged, this, &FleetView::updateCounts);
    connect(session->workspace(), &Workspace::baseModelChanged, this, &FleetView::syncBaseCombo);
    syncBaseCombo();
    updateCounts();
}

void FleetView::buildToolbar(QVBoxLayout* layout) {
    auto* bar = new QHBoxLayout;
    bar->setSpacing(8);
    m_importButton = new QToolButton;
    m_importButton->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
    bar->addWidget(m_importButton);

    auto* baseLabel = new QLabel(QStringLiteral("Base model:"));
    m_baseCombo = new QComboBox;
    m_baseCombo->setSizeAdjustPolicy(QComboBox::AdjustToContents);
    m_baseCombo->setToolTip(QStringLiteral("Imported adapters must fit this model's layer shapes exactly.\n"
                                           "\"Not checked\" accepts adapters for any base model."));
    baseLabel->setBuddy(m_baseCombo);
    bar->addSpacing(8);
    bar->addWidget(baseLabel);
    bar->addWidget(m_baseCombo);
    connect(m_baseCombo, &QComboBox::activated, this, &FleetView::onBaseComboActivated);

    bar->addSpacing(8);
    m_counts = new QLabel;
    m_counts->setTextInteractionFlags(Qt::TextSelectableByMouse);
    bar->addWidget(m_counts);
    bar->addStretch(1);

    m_filter = new QLineEdit;
    m_filter->setClearButtonEnabled(true);
    m_filter->setToolTip(
        QStringLiteral("Words match the name, folder, modules, status, cluster or error.\n"
                       "cluster=3 shows one cluster; error>0.01 or error<0.001 compare errors."));
    m_filter->setPlaceholderText(
        QStringLiteral("Filter by name, module, cluster=N, error>X (%1)")
            .arg(QKeySequence(QKeySequence::Find).toString(QKeySequence::NativeText)));
    m_filter->setMinimumWidth(320);
    m_filter->addAction(style()->standardIcon(QStyle::SP_FileDialogContentsView), QLineEdit::LeadingPosition);
    bar->addWidget(m_filter);
    layout->addLayout(bar);
}

QWidget* FleetView::buildProblemsPane() {
    m_problemsPane = new QWidget;
    auto* layout = new QVBoxLayout(m_problemsPane);
    layout->setContentsMargins(0, 4, 0, 0);
    auto* header = new QHBoxLayout;
    auto* icon = new QLabel;
    icon->setPixmap(style()->standardIcon(QStyle::SP_MessageBoxWarning).pixmap(16, 16));
    m_problemsTitle = new QLabel;
    auto* dismiss = new QPushButton(QStringLiteral("Dismiss"));
    dismiss->setToolTip(QStringLiteral("Forget these folders (they are also dropped from the workspace)"));
    connect(dismiss, &QPushButton::clicked, m_session, &Session::dismissProblems);
    header->addWidget(icon);
    header->addWidget(m_problemsTitle, 1);
    header->addWidget(dismiss);
    layout->addLayout(header);
    m_problemTable = new QTableView;
    configureTable(m_problemTable);
    m_problemTable->setModel(m_problemModel);
    m_problemTable->setTextElideMode(Qt::ElideMiddle);
    m_problemTable->horizontalHeader()->resizeSection(ProblemModel::Folder, 220);
    layout->addWidget(m_problemTable);
    m_problemsPane->hide();
    return m_problemsPane;
}

void FleetView::applyDefaultColumnWidths() {
    const QFontMetrics fm = m_table->fontMetrics();
    const int digit = fm.horizontalAdvance(QLatin1Char('0'));
    auto* header = m_table->horizontalHeader();
    header->resizeSection(FleetModel::Name, digit * 22);
    header->resizeSection(FleetModel::Rank, digit * 6);
    header->resizeSection(FleetModel::Alpha, digit * 7);
    header->resizeSection(FleetModel::Modules, digit * 14);
    header->resizeSection(FleetModel::Layers, digit * 7);
    header->resizeSection(FleetModel::Size, digit * 10);
    header->resizeSection(FleetModel::Cluster, digit * 8);
    // Wide enough for "not compressed" (adapters the bank does not hold).
    header->resizeSection(FleetModel::Error,
                          fm.horizontalAdvance(QStringLiteral("not compressed")) + digit * 2);
}

void FleetView::setImportAction(QAction* action) {
    m_importButton->setDefaultAction(action);
}

QList<int> FleetView::selectedStoreRows() const {
    QList<int> rows;
    for (const QModelIndex& index : m_table->selectionModel()->selectedRows())
        rows << m_proxy->mapToSource(index).row();
    return rows;
}

bool FleetView::removeSelected() {
    const QList<int> rows = selectedStoreRows();
    if (rows.isEmpty()) return false;
    QStringList names;
    for (int row : rows)
        names << m_session->store()->entry(row).summary.name;
    if (!m_confirmRemoval) {
        m_confirmRemoval = [this](int count, const QStringList& list) {
            QString text =
                QStringLiteral("Remove %1 from the fleet?").arg(plural(count, "adapter", "adapters"));
            QStringList shown = list.first(std::min<qsizetype>(list.size(), 10));
            if (list.size() > shown.size())
                shown << QStringLiteral("\u2026 and %1 more").arg(list.size() - shown.size());
            return QMessageBox::question(this, QStringLiteral("Remove Adapters"),
                                         text + QStringLiteral("\n\n") + shown.join('\n') +
                                             QStringLiteral("\n\nThe files stay on disk; Edit > Undo brings "
                                                            "the adapters back."),
                                         QMessageBox::Yes | QMessageBox::Cancel,
                                         QMessageBox::Cancel) == QMessageBox::Yes;
        };
    }
    if (!m_confirmRemoval(int(rows.size()), names)) return false;
    // Keep the cursor near where it was: the proxy row of the first selected row.
    int nextRow = m_proxy->rowCount();
    for (const QModelIndex& index : m_table->selectionModel()->selectedRows())
        nextRow = std::min(nextRow, index.row());
    m_session->removeRows(rows);
    if (m_proxy->rowCount() > 0) {
        const QModelIndex next = m_proxy->index(std::min(nextRow, m_proxy->rowCount() - 1), 0);
        m_table->selectionModel()->setCurrentIndex(next, QItemSelectionModel::ClearAndSelect |
                                                             QItemSelectionModel::Rows);
    }
    return true;
}

QString FleetView::countsText() const {
    return m_counts->text();
}

void FleetView::focusFilter() {
    m_filter->setFocus(Qt::ShortcutFocusReason);
    m_filter->selectAll();
}

void FleetView::selectFirstRowIfNone() {
    if (m_proxy->rowCount() == 0 || m_table->selectionModel()->hasSelection()) return;
    m_table->selectionModel()->setCurrentIndex(m_proxy->index(0, 0), QItemSelectionModel::ClearAndSelect |
                                                                         QItemSelectionModel::Rows);
}

void FleetView::applyFilter(const QString& text) {
    // The selection survives the filter: rows hidden by it are remembered by key and selected again when
    // a later filter shows them (a selection the operator makes meanwhile replaces the remembered one).
    if (!m_filtering) {
        for (const QModelIndex& index : m_table->selectionModel()->selectedRows())
            m_keptSelection.insert(index.data(FleetModel::KeyRole).toString());
    }
    m_filtering = true;
    m_proxy->setFilterText(text);
    QItemSelection selection;
    for (int r = 0; r < m_proxy->rowCount(); ++r) {
        const QModelIndex index = m_proxy->index(r, 0);
        if (m_keptSelection.contains(index.data(FleetModel::KeyRole).toString()))
            selection.select(index, index.siblingAtColumn(m_proxy->columnCount() - 1));
    }
    m_table->selectionModel()->select(selection,
                                      QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
    onSelectionChanged(); // the details pane and counts follow; the kept set stays as it is
    m_filtering = false;
}

void FleetView::fitModulesColumn() {
    // Wide enough for the longest modules label (labels are few distinct strings, measured once each).
    const QFontMetrics fm = m_table->fontMetrics();
    const int digit = fm.horizontalAdvance(QLatin1Char('0'));
    QSet<QString> seen;
    int widest = 0;
    const FleetStore* store = m_session->store();
    for (int r = 0; r < store->size(); ++r) {
        const QString& label = store->entry(r).summary.modulesLabel;
        if (seen.contains(label)) continue;
        seen.insert(label);
        widest = std::max(widest, fm.horizontalAdvance(label));
    }
    auto* header = m_table->horizontalHeader();
    const int wanted = std::min(widest + 3 * digit, 60 * digit);
    if (header->sectionSize(FleetModel::Modules) < wanted) header->resizeSection(FleetModel::Modules, wanted);
}

void FleetView::onSelectionChanged() {
    if (!m_filtering) {
        // An operator's own selection: it is what a later filter keeps.
        m_keptSelection.clear();
        for (const QModelIndex& index : m_table->selectionModel()->selectedRows())
            m_keptSelection.insert(index.data(FleetModel::KeyRole).toString());
    }
    const QModelIndexList rows = m_table->selectionModel()->selectedRows();
    if (rows.size() == 1)
        m_details->showEntry(m_session->store()->entry(m_proxy->mapToSource(rows.front()).row()));
    else
        m_details->showSelectionCount(int(rows.size()));
    emit selectionCountChanged(int(rows.size()));
    updateCounts();
}

void FleetView::updateCounts() {
    const FleetStore* store = m_session->store();
    m_tableStack->setCurrentIndex(store->isEmpty() ? 0 : 1);
    QStringList parts;
    parts << plural(store->size(), "adapter", "adapters");
    if (!store->isEmpty())
        parts << QStringLiteral("%1 of LoRA weights (%2 of files)")
                     .arg(formatBytes(store->totalWeightBytes()), formatBytes(store->totalFileBytes()));
    if (m_proxy->rowCount() != store->size())
        parts << QStringLiteral("%1 shown").arg(formatCount(m_proxy->rowCount()));
    const int selected = int(m_table->selectionModel()->selectedRows().size());
    if (selected > 1) parts << QStringLiteral("%1 selected").arg(formatCount(selected));
    m_counts->setText(parts.join(QStringLiteral("  \u00b7  ")));

    const int problems = int(store->problems().size());
    if (problems > 0 && m_problemsPane->isHidden()) {
        m_problemsPane->show();
        // A short list under the table: about six rows, the table keeps the rest.
        const int paneHeight = fontMetrics().height() * 12;
        const int total = std::max(m_leftSplitter->height(), 2 * paneHeight);
        m_leftSplitter->setSizes({total - paneHeight, paneHeight});
    } else if (problems == 0) {
        m_problemsPane->hide();
    }
    m_problemsTitle->setText(
        problems == 1 ? QStringLiteral("1 folder could not be imported")
                      : QStringLiteral("%1 folders could not be imported").arg(formatCount(problems)));
}

void FleetView::syncBaseCombo() {
    const QSignalBlocker block(m_baseCombo);
    m_baseCombo->clear();
    m_baseCombo->addItem(QStringLiteral("Not checked"), QString());
    for (const auto& name : io::geometry_preset_names())
        m_baseCombo->addItem(QString::fromStdString(name), QString::fromStdString(name));
    const QString current = m_session->workspace()->data().baseModel;
    int index = m_baseCombo->findData(current);
    if (index < 0) {
        m_baseCombo->addItem(QFileInfo(current).fileName() == QLatin1String("config.json")
                                 ? QFileInfo(current).dir().dirName()
                                 : QFileInfo(current).fileName(),
                             current);
        m_baseCombo->setItemData(m_baseCombo->count() - 1, current, Qt::ToolTipRole);
        index = m_baseCombo->count() - 1;
    }
    m_baseCombo->insertSeparator(m_baseCombo->count());
    m_baseCombo->addItem(QStringLiteral("config.json\u2026"), kBrowseConfig);
    m_baseCombo->setCurrentIndex(index);
}

void FleetView::onBaseComboActivated(int index) {
    QVariant choice = m_baseCombo->itemData(index);
    if (choice.typeId() == QMetaType::Int && choice.toInt() == kBrowseConfig) {
        const QString file =
            QFileDialog::getOpenFileName(this, QStringLiteral("Base Model Configuration"), {},
                                         QStringLiteral("HuggingFace config (config.json);;JSON (*.json)"));
        if (file.isEmpty()) {
            syncBaseCombo();
            return;
        }
        choice = file;
    }
    QString error;
    if (!m_session->setBaseModel(choice.toString(), &error))
        QMessageBox::warning(this, QStringLiteral("Base Model"),
                             QStringLiteral("Cannot use this base model.\n\n%1").arg(error));
    syncBaseCombo();
}

QByteArray FleetView::saveState() const {
    QByteArray state;
    QDataStream out(&state, QIODevice::WriteOnly);
    out << kStateMagic << m_mainSplitter->saveState() << m_leftSplitter->saveState()
        << m_table->horizontalHeader()->saveState();
    return state;
}

void FleetView::restoreState(const QByteArray& state) {
    QDataStream in(state);
    quint32 magic = 0;
    QByteArray main, left, header;
    in >> magic >> main >> left >> header;
    if (in.status() != QDataStream::Ok || magic != kStateMagic) return;
    m_mainSplitter->restoreState(main);
    m_leftSplitter->restoreState(left);
    m_table->horizontalHeader()->restoreState(header);
}

} // namespace lorafleet::ui
