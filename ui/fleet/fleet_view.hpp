// FleetView: the Fleet tab. A toolbar (import, base model, filter box, counts), the sortable multi-select
// adapter table (FleetModel through FleetProxyModel; no per-row widgets, fixed row height, so 5000 rows
// scroll and sort smoothly), the problems list of folders that failed to import (shown only when there
// are some) and the AdapterDetailsPane of the single selected adapter, in splitters whose state persists.
// Thread affinity: GUI thread.
#pragma once

#include <QSet>
#include <QWidget>

#include <functional>

class QAction;
class QComboBox;
class QLabel;
class QLineEdit;
class QSplitter;
class QStackedWidget;
class QTableView;
class QToolButton;
class QVBoxLayout;

namespace lorafleet::ui {

class AdapterDetailsPane;
class FleetModel;
class FleetProxyModel;
class ProblemModel;
class Session;

class FleetView : public QWidget {
    Q_OBJECT
public:
    explicit FleetView(Session* session, QWidget* parent = nullptr);

    void setImportAction(QAction* action); // the toolbar button triggers File > Import Adapters...

    QTableView* table() const { return m_table; }
    FleetModel* model() const { return m_model; }
    FleetProxyModel* proxy() const { return m_proxy; }
    ProblemModel* problemModel() const { return m_problemModel; }
    AdapterDetailsPane* details() const { return m_details; }
    QLineEdit* filterEdit() const { return m_filter; }
    QString countsText() const; // the line beside the filter: adapters, sizes, shown, selected

    QList<int> selectedStoreRows() const; // FleetStore rows of the selected table rows
    // Asks for confirmation (confirmRemoval), then removes the selected adapters from the fleet as one
    // undoable step. False when nothing was removed.
    bool removeSelected();
    // Asked before a removal with the number of adapters and their names; true removes. The default
    // shows a question box; tests install their own.
    using ConfirmRemoval = std::function<bool(int count, const QStringList& names)>;
    void setConfirmRemoval(ConfirmRemoval confirm) { m_confirmRemoval = std::move(confirm); }
    void focusFilter();
    void selectFirstRowIfNone();

    QByteArray saveState() const; // splitters and column layout
    void restoreState(const QByteArray& state);

signals:
    void selectionCountChanged(int count);

private:
    void buildToolbar(QVBoxLayout* layout);
    QWidget* buildProblemsPane();
    void onSelectionChanged();
    void updateCounts();
    void syncBaseCombo();
    void onBaseComboActivated(int index);
    void applyDefaultColumnWidths();
    void applyFilter(const QString& text);
    void fitModulesColumn();

    Session* m_session;
    ConfirmRemoval m_confirmRemoval;
    FleetModel* m_model;
    FleetProxyModel* m_proxy;
    ProblemModel* m_problemModel;
    QToolButton* m_importButton = nullptr;
    QComboBox* m_baseCombo = nullptr;
    QLineEdit* m_filter = nullptr;
    QLabel* m_counts = nullptr;
    QSplitter* m_mainSplitter = nullptr;
    QSplitter* m_leftSplitter = nullptr;
    QStackedWidget* m_tableStack = nullptr;
    QTableView* m_table = nullptr;
    QWidget* m_problemsPane = nullptr;
    QLabel* m_problemsTitle = nullptr;
    QTableView* m_problemTable = nullptr;
    AdapterDetailsPane* m_details = nullptr;
    QSet<QString> m_keptSelection; // FleetModel::KeyRole of the rows the operator selected
    bool m_filtering = false;      // applyFilter is changing the selection
};

} // namespace lorafleet::ui
