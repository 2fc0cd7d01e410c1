// ProblemModel: the folders that failed to import (FleetStore::problems()) as a two-column table,
// folder and one-line reason. Read-only; reset on every change (problem lists are short).
// Thread affinity: GUI thread.
#pragma once

#include <QAbstractTableModel>

namespace lorafleet::ui {

class FleetStore;

class ProblemModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Folder, Reason, ColumnCount };

    explicit ProblemModel(FleetStore* store, QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    FleetStore* m_store;
};

} // namespace lorafleet::ui
