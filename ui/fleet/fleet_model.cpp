// FleetModel (see fleet_model.hpp).
#include "ui/fleet/fleet_model.hpp"

#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"

#include <QApplication>
#include <QLocale>
#include <QStyle>

namespace lorafleet::ui {

namespace {

QString range(double lo, double hi) {
    const QString a = QLocale().toString(lo, 'g', 6);
    return lo == hi ? a : QStringLiteral("%1\u2013%2").arg(a, QLocale().toString(hi, 'g', 6));
}

} // namespace

FleetModel::FleetModel(FleetStore* store, QObject* parent) : QAbstractTableModel(parent), m_store(store) {
    if (auto* app = qobject_cast<QApplication*>(QCoreApplication::instance())) {
        m_warningIcon = app->style()->standardIcon(QStyle::SP_MessageBoxWarning);
        m_okIcon = app->style()->standardIcon(QStyle::SP_DialogApplyButton);
    }
    connect(store, &FleetStore::rowsAboutToBeInserted, this,
            [this](int first, int last) { beginInsertRows({}, first, last); });
    connect(store, &FleetStore::rowsInserted, this, [this](int, int) { endInsertRows(); });
    connect(store, &FleetStore::rowsAboutToBeRemoved, this,
            [this](int first, int last) { beginRemoveRows({}, first, last); });
    connect(store, &FleetStore::rowsRemoved, this, [this](int, int) { endRemoveRows(); });
    connect(store, &FleetStore::aboutToReset, this, [this] { beginResetModel(); });
    connect(store, &FleetStore::resetDone, this, [this] { endResetModel(); });
    connect(store, &FleetStore::resultsChanged, this,
            [this](int first, int last) { emit dataChanged(index(first, Cluster), index(last, Error)); });
}

int FleetModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : m_store->size();
}

int FleetModel::columnCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant FleetModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
    const int row = index.row();
    const int column = index.column();
    switch (role) {
    case Qt::DisplayRole:
        return display(row, column);
    case SortRole:
        return sortValue(row, column);
    case Qt::ToolTipRole:
        return toolTip(row, column);
    case Qt::TextAlignmentRole:
        if (column == Name || column == Modules || column == Status)
            return QVariant::fromValue(Qt::AlignLeft | Qt::AlignVCenter);
        return QVariant::fromValue(Qt::AlignRight | Qt::AlignVCenter);
    case Qt::DecorationRole:
        if (column == Status)
            return m_store->entry(row).summary.warnings.isEmpty() ? m_okIcon : m_warningIcon;
        return {};
    case FilterRole: {
        const auto& s = m_store->entry(row).summary;
        const FleetEntry& e = m_store->entry(row);
        QStringList parts{s.name, s.dir, s.modules.join(' '), statusText(row)};
        if (e.hasCluster()) parts << QStringLiteral("cluster %1").arg(e.cluster);
        if (e.hasError()) parts << formatError(e.error);
        return parts.join('\n');
    }
    case KeyRole:
        return m_store->entry(row).summary.key;
    default:
        return {};
    }
}

QVariant FleetModel::display(int row, int column) const {
    const FleetEntry& e = m_store->entry(row);
    const AdapterSummary& s = e.summary;
    switch (column) {
    case Name:
        return s.name;
    case Rank:
        return s.minRank == s.maxRank ? QString::number(s.maxRank)
                                      : QStringLiteral("%1\u2013%2").arg(s.minRank).arg(s.maxRank);
    case Alpha:
        return range(s.minAlpha, s.maxAlpha);
    case Modules:
        return s.modulesLabel;
    case Layers:
        return s.layers;
    case Size:
        return formatBytes(s.fileBytes);
    case Cluster:
        return e.hasCluster() ? QVariant(e.cluster) : QVariant(QStringLiteral("\u2014"));
    case Error:
        return e.hasError() ? QVariant(formatError(e.error)) : QVariant(QStringLiteral("not compressed"));
    case Status:
        return statusText(row);
    default:
        return {};
    }
}

QVariant FleetModel::sortValue(int row, int column) const {
    const FleetEntry& e = m_store->entry(row);
    const AdapterSummary& s = e.summary;
    switch (column) {
    case Name:
        return s.name.toCaseFolded();
    case Rank:
        return s.maxRank;
    case Alpha:
        return s.maxAlpha;
    case Modules:
        return s.moduleCount;
    case Layers:
        return s.layers;
    case Size:
        return qulonglong(s.fileBytes);
    case Cluster:
        return e.cluster;
    case Error:
        return e.hasError() ? e.error : -1.0;
    case Status:
        return qlonglong(s.warnings.size());
    default:
        return {};
    }
}

QVariant FleetModel::toolTip(int row, int column) const {
    const FleetEntry& e = m_store->entry(row);
    const AdapterSummary& s = e.summary;
    switch (column) {
    case Name:
        return s.dir;
    case Modules:
        return QStringLiteral("%1 (%2 across %3)")
            .arg(s.modules.join(QLatin1String(", ")), plural(s.moduleCount, "module", "modules"),
                 plural(s.layers, "layer", "layers"));
    case Size:
        return QStringLiteral("%1 bytes on disk; LoRA factors %2 (%3), %4 parameters")
            .arg(formatCount(qint64(s.fileBytes)), formatBytes(s.weightBytes), s.dtype,
                 formatCount(s.parameters));
    case Status:
        return s.warnings.isEmpty() ? QStringLiteral("Loaded without warnings") : s.warnings.join('\n');
    default:
        return {};
    }
}

QString FleetModel::statusText(int row) const {
    const auto& w = m_store->entry(row).summary.warnings;
    if (w.isEmpty()) return QStringLiteral("OK");
    return w.size() == 1 ? oneLine(w.front(), 120) : plural(w.size(), "warning", "warnings");
}

QVariant FleetModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal || section < 0 || section >= ColumnCount) return {};
    if (role == Qt::DisplayRole) {
        static const char* const titles[] = {"Name", "Rank",    "Alpha", "Modules", "Layers",
                                             "Size", "Cluster", "Error", "Status"};
        return QString::fromLatin1(titles[section]);
    }
    if (role == Qt::ToolTipRole) {
        static const char* const tips[] = {
            "Adapter folder name",
            "LoRA rank r (a range when rank_pattern varies it per module)",
            "lora_alpha (scale = alpha / r, or alpha / sqrt(r) with rsLoRA)",
            "Adapted module types",
            "Decoder layers with at least one adapted module",
            "adapter_model.safetensors on disk (the tooltip gives the LoRA factors' own size, the number "
            "the Compress tab compares with the bank)",
            "Cluster assigned by joint compression",
            "Squared relative reconstruction error after compression, ||dW - dW'||_F^2 / ||dW||_F^2 (mean "
            "over modules)",
            "Load status and warnings",
        };
        return QString::fromLatin1(tips[section]);
    }
    if (role == Qt::TextAlignmentRole) {
        const bool left = section == Name || section == Modules || section == Status;
        return QVariant::fromValue((left ? Qt::AlignLeft : Qt::AlignRight) | Qt::AlignVCenter);
    }
    return {};
}

} // namespace lorafleet::ui
