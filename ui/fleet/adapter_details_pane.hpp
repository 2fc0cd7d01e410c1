// AdapterDetailsPane: everything about the current adapter of the fleet table: folder, rank / alpha /
// scale, dtype, parameter count, size, the base model its config names, the per-module table with the
// Frobenius norm of each update, and the loader's warnings. Norms are computed on a quiet EngineJob
// (they read every weight) and dropped if the selection moved on meanwhile.
// Thread affinity: GUI thread.
#pragma once

#include "ui/fleet/fleet_entry.hpp"

#include <QPointer>
#include <QWidget>

class QGridLayout;
class QLabel;
class QPlainTextEdit;
class QStackedWidget;
class QTableView;

namespace lorafleet::ui {

class ElidedLabel;
class EngineHost;
class EngineJob;
class ModuleTableModel;

class AdapterDetailsPane : public QWidget {
    Q_OBJECT
public:
    explicit AdapterDetailsPane(EngineHost* host, QWidget* parent = nullptr);
    ~AdapterDetailsPane() override;

    void showEntry(const FleetEntry& entry);
    void showSelectionCount(int selected); // several (or no) adapters selected: a hint instead
    ModuleTableModel* moduleModel() const { return m_modules; }
    bool normsPending() const { return !m_job.isNull(); }

signals:
    void normsReady(); // for tests and screenshots

private:
    void startNorms();
    ElidedLabel* addField(QGridLayout* grid, int row, int column, const QString& title);

    EngineHost* m_host;
    QStackedWidget* m_stack = nullptr;
    QLabel* m_hint = nullptr;
    QLabel* m_title = nullptr;
    ElidedLabel* m_path = nullptr;
    QLabel* m_rank = nullptr;
    QLabel* m_alpha = nullptr;
    QLabel* m_dtype = nullptr;
    QLabel* m_layers = nullptr;
    QLabel* m_params = nullptr;
    QLabel* m_size = nullptr;
    ElidedLabel* m_base = nullptr;
    QLabel* m_norm = nullptr;
    QTableView* m_table = nullptr;
    QLabel* m_warningsTitle = nullptr;
    QPlainTextEdit* m_warnings = nullptr;
    ModuleTableModel* m_modules = nullptr;
    QPointer<EngineJob> m_job;
};

} // namespace lorafleet::ui
