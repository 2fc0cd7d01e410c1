// FleetProxyModel: sorting and the filter box over FleetModel. Sorts by FleetModel::SortRole (sizes as
// byte counts, ranks as numbers; ties by name so the order is total), filters by whitespace-separated
// words that must all occur, case-insensitively, in a row's name, folder, modules or status. A filter
// change re-maps all rows in one layout change.
// Thread affinity: GUI thread.
#pragma once

#include <QSortFilterProxyModel>
#include <QStringList>

namespace lorafleet::ui {

class FleetProxyModel : public QSortFilterProxyModel {
    Q_OBJECT
public:
    explicit FleetProxyModel(QObject* parent = nullptr);

    void setFilterText(const QString& text);
    QString filterText() const { return m_words.join(' '); }

protected:
    bool filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const override;
    bool lessThan(const QModelIndex& left, const QModelIndex& right) const override;

private:
    QStringList m_words;
};

} // namespace lorafleet::ui
