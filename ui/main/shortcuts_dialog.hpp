// Help > Keyboard Shortcuts: every action of the window's menus that has a shortcut, read from the actions
// themselves (so the list can never drift from what the keys do), as "Menu > Item" and the key sequences
// in the platform's notation. Thread affinity: GUI thread.
#pragma once

#include <QDialog>
#include <QList>
#include <QString>

class QMenuBar;
class QTableWidget;

namespace lorafleet::ui {

struct ShortcutRow {
    QString command; // "File > Save" (mnemonic ampersands and trailing ellipses removed)
    QString keys;    // "Ctrl+S" (several bindings joined by ", ")
};

// In menu order, submenus included; actions without a shortcut and separators are skipped.
QList<ShortcutRow> shortcutRows(const QMenuBar* menuBar);

class ShortcutsDialog : public QDialog {
    Q_OBJECT
public:
    explicit ShortcutsDialog(const QMenuBar* menuBar, QWidget* parent = nullptr);
    QTableWidget* table() const { return m_table; }

private:
    QTableWidget* m_table = nullptr;
};

} // namespace lorafleet::ui
