// AdapterDetailsPane: everything about the current adapter of the fleet table: folder, rank / alpha /
// scale, dtype, parameter count, size, the base model its config names, the per-module table with the
// Frobenius norm of each update, and the loader's warnings. Norms are computed on a quiet EngineJob
// (they read every weight) and dropped if the selection moved on meanwhile. Once the fleet is compressed
// (setBank, fed from Session::bankChanged by the main window) the header shows the adapter's cluster and
// mean error and the table each module's error, looked up in the bank by adapter name and module path;
// all blank ("—") when there is no bank or it does not hold the adapter.
// Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "ui/fleet/fleet_entry.hpp"

#include <QPointer>
#include <QWidget>

#include <memory>

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
    // The session's current bank (nullptr: none); kept for the adapters shown later.
    void setBank(std::shared_ptr<const bank::compressed_bank> bank);
    QString clusterText() const;   // the header's cluster field, for tests
    QString meanErrorText() const; // the header's mean error field, for tests
    ModuleTableModel* moduleModel() const { return m_modules; }
    bool normsPending() const { return !m_job.isNull(); }

signals:
    void normsReady(); // for tests and screenshots

private:
    void startNorms();
    void updateBankFields(); // cluster and mean error from the module model's bank entry
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
    QLabel* m_cluster = nullptr;
    QLabel* m_meanError = nullptr;
    QTableView* m_table = nullptr;
    QLabel* m_warningsTitle = nullptr;
    QPlainTextEdit* m_warnings = nullptr;
    ModuleTableModel* m_modules = nullptr;
    QPointer<EngineJob> m_job;
};

} // namespace lorafleet::ui
