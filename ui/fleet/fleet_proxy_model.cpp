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
    const QStringList all = text.split(QRegularExpression(QStringLiteral("\\s+")), Qt::SkipEmptyParts);
    const QString normalised = all.join(' ');
    if (normalised == m_text) return;
    m_text = normalised;
    m_words.clear();
    m_predicates.clear();
    static const QRegularExpression predicate(QStringLiteral("^(cluster)=(-|none|\\d+)$|^(error)([<>])(.+)$"),
                                              QRegularExpression::CaseInsensitiveOption);
    for (const QString& w : all) {
        const auto m = predicate.match(w);
        bool ok = false;
        if (m.hasMatch() && !m.captured(1).isEmpty()) {
            const QString v = m.captured(2).toLower();
            m_predicates.append({Predicate::Cluster, v == QLatin1String("-") || v == QLatin1String("none")
                                                         ? -1.0
                                                         : double(v.toInt())});
            continue;
        }
        if (m.hasMatch() && !m.captured(3).isEmpty()) {
            const double bound = m.captured(5).toDouble(&ok); // C locale: "0.01", "1e-3"
            if (ok) {
                m_predicates.append(
                    {m.captured(4) == QLatin1String("<") ? Predicate::ErrorBelow : Predicate::ErrorAbove,
                     bound});
                continue;
            }
        }
        m_words << w;
    }
    // One layout change instead of one removal per scattered run of rows: with thousands of rows a
    // filter edit is then a single, cheap update for the view, its selection and any observers.
    invalidate();
}

bool FleetProxyModel::filterAcceptsRow(int sourceRow, const QModelIndex& sourceParent) const {
    if (m_words.isEmpty() && m_predicates.isEmpty()) return true;
    if (!m_predicates.isEmpty()) {
        const QModelIndex row = sourceModel()->index(sourceRow, 0, sourceParent);
        const int cluster = row.siblingAtColumn(FleetModel::Cluster).data(FleetModel::SortRole).toInt();
        const double error = row.siblingAtColumn(FleetModel::Error).data(FleetModel::SortRole).toDouble();
        for (const auto& p : m_predicates) {
            const bool hasError = error >= 0; // SortRole: -1 without an error
            if (p.kind == Predicate::Cluster && cluster != int(p.value)) return false;
            if (p.kind == Predicate::ErrorBelow && !(hasError && error < p.value)) return false;
            if (p.kind == Predicate::ErrorAbove && !(hasError && error > p.value)) return false;
        }
    }
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
