// ShortcutsDialog (see shortcuts_dialog.hpp).
#include "ui/main/shortcuts_dialog.hpp"

#include <QDialogButtonBox>
#include <QHeaderView>
#include <QMenu>
#include <QMenuBar>
#include <QRegularExpression>
#include <QTableWidget>
#include <QVBoxLayout>

namespace lorafleet::ui {

namespace {

QString plainText(QString text) {
    text.remove(QRegularExpression(QStringLiteral("&(?!&)")));
    text.replace(QStringLiteral("&&"), QStringLiteral("&"));
    if (text.endsWith(QChar(0x2026))) text.chop(1);
    if (text.endsWith(QLatin1String("..."))) text.chop(3);
    return text.trimmed();
}

void collect(const QMenu* menu, const QString& path, QList<ShortcutRow>& rows) {
    for (QAction* a : menu->actions()) {
        if (a->isSeparator()) continue;
        const QString name = path + QStringLiteral(" > ") + plainText(a->text());
        if (a->menu()) {
            collect(a->menu(), name, rows);
            continue;
        }
        const QList<QKeySequence> keys = a->shortcuts();
        if (keys.isEmpty()) continue;
        QStringList text;
        for (const QKeySequence& k : keys)
            text << k.toString(QKeySequence::NativeText);
        rows.append({name, text.join(QStringLiteral(", "))});
    }
}

} // namespace

QList<ShortcutRow> shortcutRows(const QMenuBar* menuBar) {
    QList<ShortcutRow> rows;
    if (!menuBar) return rows;
    for (QAction* top : menuBar->actions())
        if (top->menu()) collect(top->menu(), plainText(top->text()), rows);
    return rows;
}

ShortcutsDialog::ShortcutsDialog(const QMenuBar* menuBar, QWidget* parent) : QDialog(parent) {
    setWindowTitle(tr("Keyboard Shortcuts"));
    const QList<ShortcutRow> rows = shortcutRows(menuBar);
    m_table = new QTableWidget(int(rows.size()), 2, this);
    m_table->setHorizontalHeaderLabels({tr("Command"), tr("Shortcut")});
    m_table->verticalHeader()->hide();
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    for (int r = 0; r < rows.size(); ++r) {
        m_table->setItem(r, 0, new QTableWidgetItem(rows[r].command));
        m_table->setItem(r, 1, new QTableWidgetItem(rows[r].keys));
    }
    m_table->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
    m_table->horizontalHeader()->setSectionResizeMode(1, QHeaderView::ResizeToContents);
    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Close, this);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(m_table);
    layout->addWidget(buttons);
    resize(520, 480);
}

} // namespace lorafleet::ui
