// FleetModel: the fleet as a table, one row per FleetStore entry (same row numbers), read-only. It keeps
// no copy of the data: data() reads the store's precomputed summaries, so 5000 rows cost nothing beyond
// the store. Store changes are forwarded as batched begin/end row signals and one dataChanged per
// results update. Sizes display human-readable and sort by raw value through SortRole.
// Thread affinity: GUI thread (like the store it presents).
#pragma once

#include <QAbstractTableModel>
#include <QIcon>

namespace lorafleet::ui {

class FleetStore;

class FleetModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Name, Rank, Alpha, Modules, Layers, Size, Cluster, Error, Status, ColumnCount };
    Q_ENUM(Column)
    enum Role {
        SortRole = Qt::UserRole + 1, // raw value for sorting: numbers as numbers, names case-folded
        FilterRole,                  // text the filter box searches (name, folder, modules, status)
        KeyRole,                     // the entry's canonical folder path (stable identity)
    };

    explicit FleetModel(FleetStore* store, QObject* parent = nullptr);

    FleetStore* store() const { return m_store; }

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    QVariant display(int row, int column) const;
    QVariant sortValue(int row, int column) const;
    QVariant toolTip(int row, int column) const;
    QString statusText(int row) const;

    FleetStore* m_store;
    QIcon m_warningIcon;
    QIcon m_okIcon;
};

} // namespace lorafleet::ui
