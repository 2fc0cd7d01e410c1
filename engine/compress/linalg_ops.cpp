// Shared parts of LinalgOps: the working-set layout and the row (un)stacking of per-member blocks.
#include "engine/compress/linalg_ops.hpp"

#include "engine/core/error.hpp"

#include <algorithm>

namespace lorafleet::compress {

void LinalgOps::set_layout(const module_batch& batch, std::span<const std::size_t> members) {
    ops_layout l;
    l.d_out = batch.d_out;
    l.d_in = batch.d_in;
    for (const auto p : members) {
        if (p >= batch.size())
            throw shape_mismatch(batch.name, "select: position " + std::to_string(p) +
                                                 " outside a batch of " + std::to_string(batch.size()));
        l.offsets.push_back(l.total);
        l.ranks.push_back(batch.adapters[p].rank);
        l.total += batch.adapters[p].rank;
    }
    m_layout = std::move(l);
}

std::vector<dmatrix> LinalgOps::block_grams_exact(ops_side s) {
    const auto g = block_grams(s);
    std::vector<dmatrix> out;
    out.reserve(g.size());
    for (const auto& m : g)
        out.push_back(to_double(m));
    return out;
}

std::vector<dmatrix> LinalgOps::project_exact(ops_side s, const matrix& x) {
    const auto blocks = split_rows(m_layout, project(s, x));
    std::vector<dmatrix> out;
    out.reserve(blocks.size());
    for (const auto& m : blocks)
        out.push_back(to_double(m));
    return out;
}

std::vector<matrix> split_rows(const ops_layout& layout, const matrix& stacked) {
    check_shape(stacked.rows == layout.total, "split_rows",
                std::to_string(stacked.rows) + " rows for a working set of " + std::to_string(layout.total));
    std::vector<matrix> out(layout.size());
    for (std::size_t k = 0; k < layout.size(); ++k) {
        matrix m(layout.ranks[k], stacked.cols);
        for (std::int64_t j = 0; j < stacked.cols; ++j)
            std::copy_n(stacked.col(j) + layout.offsets[k], layout.ranks[k], m.col(j));
        out[k] = std::move(m);
    }
    return out;
}

matrix stack_rows(const ops_layout& layout, const std::vector<matrix>& blocks) {
    check_shape(blocks.size() == layout.size(), "stack_rows", "one block per member expected");
    const std::int64_t c = blocks.empty() ? 0 : blocks.front().cols;
    matrix out(layout.total, c);
    for (std::size_t k = 0; k < layout.size(); ++k) {
        check_shape(blocks[k].rows == layout.ranks[k] && blocks[k].cols == c, "stack_rows", "block shape");
        for (std::int64_t j = 0; j < c; ++j)
            std::copy_n(blocks[k].col(j), layout.ranks[k], out.col(j) + layout.offsets[k]);
    }
    return out;
}

} // namespace lorafleet::compress
