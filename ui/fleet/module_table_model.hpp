// ModuleTableModel: the modules of one adapter (details pane): path, rank, scale, d_out x d_in, the
// Frobenius norm of s·B·A, which arrives later from a worker (setNorms) and shows "…" until then, and
// the compressed bank's squared relative error of the module, ||ΔW − UΣVᵀ||²_F / ||ΔW||²_F (setBank).
// The bank is matched by adapter name and each module by path; the Error cell is blank while there is
// no bank, when the bank does not hold the adapter, or where the bank has no (or a NaN) entry for the
// module. Holds shared_ptrs to the adapter and the bank it shows, so the rows stay valid even if the
// fleet drops the adapter or the session replaces the bank. Thread affinity: GUI thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/peft_adapter.hpp"

#include <QAbstractTableModel>

#include <memory>
#include <vector>

namespace lorafleet::ui {

class ModuleTableModel : public QAbstractTableModel {
    Q_OBJECT
public:
    enum Column { Path, Rank, Scale, Shape, Norm, Error, ColumnCount };
    static constexpr int SortRole = Qt::UserRole + 1;

    explicit ModuleTableModel(QObject* parent = nullptr);

    void setAdapter(std::shared_ptr<const io::peft_adapter> adapter); // nullptr: empty
    const std::shared_ptr<const io::peft_adapter>& adapter() const { return m_adapter; }
    // One norm per module, in module order (ignored when the size does not match); NaN: not computed.
    void setNorms(std::vector<double> norms);
    bool hasNorms() const { return !m_norms.empty(); }
    double totalNorm() const; // sqrt of the sum of squares; NaN until setNorms

    // The current compressed bank (nullptr: none). Kept across setAdapter, so a newly shown adapter
    // gets its errors at once.
    void setBank(std::shared_ptr<const bank::compressed_bank> bank);
    const std::shared_ptr<const bank::compressed_bank>& bank() const { return m_bank; }
    bool hasBankEntry() const { return m_bankAdapter != nullptr; } // the bank holds the shown adapter
    int cluster() const;         // the adapter's cluster in the bank; -1 without an entry
    double meanError() const;    // bank_adapter::mean_error(); NaN without an entry
    double error(int row) const; // squared relative error of module `row`; NaN where blank

    int rowCount(const QModelIndex& parent = {}) const override;
    int columnCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QVariant headerData(int section, Qt::Orientation orientation, int role = Qt::DisplayRole) const override;

private:
    void matchBank(); // m_bankAdapter and m_errors from m_bank for m_adapter

    std::shared_ptr<const io::peft_adapter> m_adapter;
    std::vector<double> m_norms;
    std::shared_ptr<const bank::compressed_bank> m_bank;
    const bank::bank_adapter* m_bankAdapter = nullptr; // into *m_bank
    std::vector<double> m_errors;                      // [modules of m_adapter] when m_bankAdapter
};

} // namespace lorafleet::ui
