// ProblemModel (see problem_model.hpp).
#include "ui/fleet/problem_model.hpp"

#include "ui/fleet/fleet_store.hpp"

#include <QDir>

namespace lorafleet::ui {

ProblemModel::ProblemModel(FleetStore* store, QObject* parent) : QAbstractTableModel(parent), m_store(store) {
    connect(store, &FleetStore::problemsAboutToChange, this, [this] { beginResetModel(); });
    connect(store, &FleetStore::problemsChanged, this, [this] { endResetModel(); });
}

int ProblemModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : int(m_store->problems().size());
}

int ProblemModel::columnCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant ProblemModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
    const ImportProblem& p = m_store->problems().at(index.row());
    if (role == Qt::DisplayRole) {
        if (index.column() == Folder)
            return QDir(p.path).dirName().isEmpty() ? p.path : QDir(p.path).dirName();
        return p.reason;
    }
    if (role == Qt::ToolTipRole) return index.column() == Folder ? p.path : p.reason;
    return {};
}

QVariant ProblemModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal) return {};
    if (role == Qt::TextAlignmentRole) return QVariant::fromValue(Qt::AlignLeft | Qt::AlignVCenter);
    if (role != Qt::DisplayRole) return {};
    if (section == Folder) return QStringLiteral("Folder");
    if (section == Reason) return QStringLiteral("Reason");
    return {};
}

} // namespace lorafleet::ui
