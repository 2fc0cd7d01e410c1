// ModuleTableModel (see module_table_model.hpp).
#include "ui/fleet/module_table_model.hpp"

#include "ui/common/text_format.hpp"

#include <QLocale>

#include <cmath>
#include <limits>
#include <string_view>
#include <unordered_map>

namespace lorafleet::ui {

ModuleTableModel::ModuleTableModel(QObject* parent) : QAbstractTableModel(parent) {}

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

void ModuleTableModel::setAdapter(std::shared_ptr<const io::peft_adapter> adapter) {
    beginResetModel();
    m_adapter = std::move(adapter);
    m_norms.clear();
    matchBank();
    endResetModel();
}

void ModuleTableModel::setBank(std::shared_ptr<const bank::compressed_bank> bank) {
    m_bank = std::move(bank);
    matchBank();
    if (rowCount() > 0) emit dataChanged(index(0, Error), index(rowCount() - 1, Error));
}

void ModuleTableModel::matchBank() {
    m_bankAdapter = nullptr;
    m_errors.clear();
    if (!m_bank || !m_adapter) return;
    const auto i = m_bank->find_adapter(m_adapter->name);
    if (!i) return;
    m_bankAdapter = &m_bank->adapters[*i];
    std::unordered_map<std::string_view, std::size_t> byPath;
    for (std::size_t m = 0; m < m_bank->modules.size(); ++m)
        byPath.emplace(m_bank->modules[m].path, m);
    m_errors.reserve(m_adapter->modules.size());
    for (const io::lora_module& module : m_adapter->modules) {
        const auto it = byPath.find(module.path);
        m_errors.push_back(it == byPath.end() || it->second >= m_bankAdapter->errors.size()
                               ? kNaN
                               : m_bankAdapter->errors[it->second]);
    }
}

int ModuleTableModel::cluster() const {
    return m_bankAdapter ? m_bankAdapter->cluster : -1;
}

double ModuleTableModel::meanError() const {
    return m_bankAdapter ? m_bankAdapter->mean_error() : kNaN;
}

double ModuleTableModel::error(int row) const {
    return row >= 0 && std::size_t(row) < m_errors.size() ? m_errors[std::size_t(row)] : kNaN;
}

void ModuleTableModel::setNorms(std::vector<double> norms) {
    if (!m_adapter || norms.size() != m_adapter->modules.size() || norms.empty()) return;
    m_norms = std::move(norms);
    emit dataChanged(index(0, Norm), index(rowCount() - 1, Norm));
}

double ModuleTableModel::totalNorm() const {
    if (m_norms.empty()) return std::numeric_limits<double>::quiet_NaN();
    double sum = 0.0;
    for (double n : m_norms)
        sum += n * n;
    return std::sqrt(sum);
}

int ModuleTableModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() || !m_adapter ? 0 : int(m_adapter->modules.size());
}

int ModuleTableModel::columnCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : ColumnCount;
}

QVariant ModuleTableModel::data(const QModelIndex& index, int role) const {
    if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid)) return {};
    const io::lora_module& m = m_adapter->modules.at(std::size_t(index.row()));
    const double norm = m_norms.empty() ? kNaN : m_norms[std::size_t(index.row())];
    const double err = error(index.row());
    const QLocale locale;
    if (role == Qt::DisplayRole) {
        switch (index.column()) {
        case Path:
            return QString::fromStdString(m.path);
        case Rank:
            return m.rank;
        case Scale:
            return locale.toString(m.scale, 'g', 4);
        case Shape:
            return QStringLiteral("%1 \u00d7 %2").arg(m.d_out).arg(m.d_in);
        case Norm:
            return std::isnan(norm) ? QStringLiteral("\u2026") : locale.toString(norm, 'f', 4);
        case Error:
            if (std::isnan(err)) return {};
            return formatError(err);
        default:
            return {};
        }
    }
    if (role == SortRole) {
        switch (index.column()) {
        case Path:
            return index.row(); // canonical module order
        case Rank:
            return m.rank;
        case Scale:
            return m.scale;
        case Shape:
            return qlonglong(m.d_out * m.d_in);
        case Norm:
            return std::isnan(norm) ? -1.0 : norm;
        case Error:
            return std::isnan(err) ? -1.0 : err;
        default:
            return {};
        }
    }
    if (role == Qt::TextAlignmentRole)
        return QVariant::fromValue((index.column() == Path ? Qt::AlignLeft : Qt::AlignRight) |
                                   Qt::AlignVCenter);
    if (role == Qt::ToolTipRole) {
        if (index.column() == Path)
            return QStringLiteral("%1\nalpha %2, scale %3, A %4 / B %5")
                .arg(QString::fromStdString(m.path), locale.toString(m.alpha, 'g', 6),
                     locale.toString(m.scale, 'g', 6), latin1(io::dtype_name(m.a.type())),
                     latin1(io::dtype_name(m.b.type())));
        if (index.column() == Norm && !std::isnan(norm))
            return QStringLiteral("||s\u00b7B\u00b7A||_F = %1").arg(locale.toString(norm, 'g', 8));
        if (index.column() == Error && !std::isnan(err))
            return QStringLiteral("||\u0394W \u2212 U\u03a3V\u1d40||\u00b2_F / ||\u0394W||\u00b2_F = %1")
                .arg(locale.toString(err, 'g', 8));
    }
    return {};
}

QVariant ModuleTableModel::headerData(int section, Qt::Orientation orientation, int role) const {
    if (orientation != Qt::Horizontal) return {};
    if (role == Qt::DisplayRole) {
        static const char* const titles[] = {
            "Module", "Rank", "Scale", "d_out \u00d7 d_in", "\u2016\u0394W\u2016_F", "Error"};
        if (section >= 0 && section < ColumnCount) return QString::fromUtf8(titles[section]);
    }
    if (role == Qt::ToolTipRole && section == Norm)
        return QStringLiteral(
            "Frobenius norm of the update s\u00b7B\u00b7A, computed as sqrt(tr((B\u1d40B)(AA\u1d40)))");
    if (role == Qt::ToolTipRole && section == Error)
        return QStringLiteral("Squared relative error of the module in the compressed bank, "
                              "||\u0394W \u2212 U\u03a3V\u1d40||\u00b2_F / ||\u0394W||\u00b2_F; "
                              "blank before compression or where the bank lacks the module");
    if (role == Qt::TextAlignmentRole)
        return QVariant::fromValue((section == Path ? Qt::AlignLeft : Qt::AlignRight) | Qt::AlignVCenter);
    return {};
}

} // namespace lorafleet::ui
