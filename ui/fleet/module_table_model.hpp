// ModuleTableModel: the modules of one adapter (details pane): path, rank, scale, d_out x d_in and the
// Frobenius norm of s·B·A, which arrives later from a worker (setNorms) and shows "…" until then.
// Holds a shared_ptr to the adapter it shows, so the rows stay valid even if the fleet drops it.
// Thread affinity: GUI thread.
#pragma once

#include "engine/io/peft_adapter.hpp"

#include <QAbstractTableModel>

#include <memory>
#include <vector>

namespace lorafleet::ui {

class ModuleTableModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Path, Rank, Scale, Shape, Norm, ColumnCount };
    static constexpr int SortRole = Qt::UserRole + 1;

    explicit ModuleTableModel(QObject* parent = nullptr);

    void setAdapter(std::shared_ptr<const io::peft_adapter> adapter); // nullptr: empty
    const std::shared_ptr<const io::peft_adapter>& adapter() const { return m_adapter; }
    // One norm per module, in module order (ignored when the size does not match); NaN: not computed.
    void setNorms(std::vector<double> norms);
    bool hasNorms() const { return !m_norms.empty(); }
    double totalNorm() const; // sqrt of the sum of squares; NaN until setNorms

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    std::shared_ptr<const io::peft_adapter> m_adapter;
    std::vector<double> m_norms;
};

} // namespace lorafleet::ui
