// FleetProxyModel (see fleet_proxy_model.hpp).
#include "ui/fleet/fleet_proxy_model.hpp"

#include "ui/fleet/fleet_model.hpp"

#include <QRegularExpression>

namespace lorafleet::ui {

FleetProxyModel::FleetProxyModel(QObject* parent) : QSortFilterProxyModel(parent) {
    setSortRole(FleetModel::SortRole);
    setDynamicSortFilter(true);
}

void FleetProxyModel::setFilterText(const QString& text) {
    const QStringList words = text.split(QRegularExpression(QStringLiteral("\\s+")), Qt::SkipEmptyParts);
    if (words == m_words) return;
    m_words = words;
    // One layout change instead of one removal per scattered run of rows: with thousands of rows a
    // filter edit is then a single, cheap update for the view, its selection and any observers.
    invalidate();
}

bool FleetProxyModel::filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const {
    if (m_words.isEmpty()) return true;
    const QString haystack =
        sourceModel()->index(sourceRow, 0, sourceParent).data(FleetModel::FilterRole).toString();
    for (const auto& w : m_words)
        if (!haystack.contains(w, Qt::CaseInsensitive)) return false;
    return true;
}

bool FleetProxyModel::lessThan(const QModelIndex& left, const QModelIndex& right) const {
    const QVariant l = left.data(sortRole());
    const QVariant r = right.data(sortRole());
    const auto order = QVariant::compare(l, r);
    if (order == QPartialOrdering::Less) return true;
    if (order == QPartialOrdering::Greater) return false;
    // Equal (or incomparable): by name, then by source row, so sorting is deterministic.
    const QString ln = left.siblingAtColumn(FleetModel::Name).data(FleetModel::SortRole).toString();
    const QString rn = right.siblingAtColumn(FleetModel::Name).data(FleetModel::SortRole).toString();
    if (ln != rn) return ln < rn;
    return left.row() < right.row();
}

} // namespace lorafleet::ui
