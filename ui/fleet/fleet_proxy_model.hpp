// FleetProxyModel: sorting and the filter box over FleetModel. Sorts by FleetModel::SortRole (sizes as
// byte counts, ranks as numbers; ties by name so the order is total), filters by whitespace-separated
// words that must all hold for a row:
//   cluster=N          the row's cluster is exactly N ("cluster=-" or "cluster=none": not in the bank)
//   error<X, error>X   the row's compression error (a fraction, as shown) is below / above X;
//                      rows without an error never match
//   anything else      occurs, case-insensitively, in the row's name, folder, modules, status, cluster
//                      ("cluster 3") or error text (as formatError shows it, e.g. "0.00347")
// A filter change re-maps all rows in one layout change.
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
    QString filterText() const { return m_text; }

protected:
    bool filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const override;
    bool lessThan(const QModelIndex& left, const QModelIndex& right) const override;

private:
    struct Predicate {
        enum Kind { Cluster, ErrorBelow, ErrorAbove } kind;
        double value = 0; // cluster number (-1: none) or error bound
    };
    QStringList m_words;           // substring words
    QList<Predicate> m_predicates; // cluster= / error< / error>
    QString m_text;                // the filter as given (normalised whitespace)
};

} // namespace lorafleet::ui
