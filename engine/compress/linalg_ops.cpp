// Shared parts of LinalgOps: the working-set layout and the row (un)stacking of per-member blocks.
#include "engine/compress/linalg_ops.hpp"

#include "engine/core/error.hpp"

#include <algorithm>

namespace lorafleet::compress {

namespace {

ops_layout make_layout(const module_batch& batch, std::span<const std::size_t> members) {
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
    return l;
}

} // namespace

void LinalgOps::set_layout(const module_batch& batch, std::span<const std::size_t> members) {
    m_layout = make_layout(batch, members);
}

void LinalgOps::set_group_layouts(const module_batch& batch,
                                  std::span<const std::vector<std::size_t>> groups) {
    batch.validate();
    std::vector<ops_layout> layouts;
    layouts.reserve(groups.size());
    for (std::size_t g = 0; g < groups.size(); ++g) {
        if (groups[g].empty())
            throw usage_error("select_groups",
                              "group " + std::to_string(g) + " of " + batch.name + " is empty");
        layouts.push_back(make_layout(batch, groups[g]));
    }
    m_group_layouts = std::move(layouts);
    m_group_members.assign(groups.begin(), groups.end());
    m_group_batch = &batch;
}

void LinalgOps::check_active(std::span<const std::size_t> active, std::size_t inputs,
                             const char* what) const {
    if (inputs != active.size())
        throw usage_error(what, std::to_string(inputs) + " inputs for " + std::to_string(active.size()) +
                                    " active groups");
    std::vector<char> seen(m_group_layouts.size(), 0);
    for (const auto g : active) {
        if (g >= m_group_layouts.size())
            throw usage_error(what,
                              "group " + std::to_string(g) + " of " + std::to_string(m_group_layouts.size()));
        if (seen[g]++ != 0) throw usage_error(what, "group " + std::to_string(g) + " listed twice");
    }
}

void LinalgOps::select_groups(const module_batch& batch, std::span<const std::vector<std::size_t>> groups) {
    set_group_layouts(batch, groups);
}

namespace {

// The default grouped operations: select each active group and run the single operation.
template <class Out, class Select, class Fn>
std::vector<Out> each_group(std::span<const std::size_t> active, const Select& select_group, const Fn& fn) {
    std::vector<Out> out;
    out.reserve(active.size());
    for (std::size_t i = 0; i < active.size(); ++i) {
        select_group(active[i]);
        out.push_back(fn(i));
    }
    return out;
}

} // namespace

std::vector<matrix> LinalgOps::project_groups(ops_side s, std::span<const std::size_t> active,
                                              std::span<const matrix> x) {
    check_active(active, x.size(), "project_groups");
    return each_group<matrix>(
        active, [this](std::size_t g) { select(*group_batch(), group_members(g)); },
        [&](std::size_t i) { return project(s, x[i]); });
}

std::vector<matrix> LinalgOps::accumulate_groups(ops_side s, std::span<const std::size_t> active,
                                                 std::span<const matrix> z) {
    check_active(active, z.size(), "accumulate_groups");
    return each_group<matrix>(
        active, [this](std::size_t g) { select(*group_batch(), group_members(g)); },
        [&](std::size_t i) { return accumulate(s, z[i]); });
}

std::vector<matrix> LinalgOps::apply_blocks_groups(ops_side s, std::span<const std::size_t> active,
                                                   std::span<const std::vector<matrix>> c,
                                                   std::span<const matrix> q) {
    check_active(active, c.size(), "apply_blocks_groups");
    check_active(active, q.size(), "apply_blocks_groups");
    return each_group<matrix>(
        active, [this](std::size_t g) { select(*group_batch(), group_members(g)); },
        [&](std::size_t i) { return apply_blocks(s, c[i], q[i]); });
}

std::vector<std::vector<matrix>> LinalgOps::block_grams_groups(ops_side s,
                                                               std::span<const std::size_t> active) {
    check_active(active, active.size(), "block_grams_groups");
    return each_group<std::vector<matrix>>(
        active, [this](std::size_t g) { select(*group_batch(), group_members(g)); },
        [&](std::size_t) { return block_grams(s); });
}

std::vector<std::vector<dmatrix>> LinalgOps::block_grams_exact_groups(ops_side s,
                                                                      std::span<const std::size_t> active) {
    check_active(active, active.size(), "block_grams_exact_groups");
    return each_group<std::vector<dmatrix>>(
        active, [this](std::size_t g) { select(*group_batch(), group_members(g)); },
        [&](std::size_t) { return block_grams_exact(s); });
}

std::vector<matrix> LinalgOps::top_small_gram_groups(ops_side s, std::span<const std::size_t> active,
                                                     std::span<const std::vector<matrix>> factors,
                                                     std::span<const std::int64_t> k) {
    check_active(active, factors.size(), "top_small_gram_groups");
    check_active(active, k.size(), "top_small_gram_groups");
    return each_group<matrix>(
        active, [this](std::size_t g) { select(*group_batch(), group_members(g)); },
        [&](std::size_t i) { return top_small_gram(s, factors[i], k[i]); });
}

std::vector<matrix> LinalgOps::top_large_gram_groups(ops_side s, std::span<const std::size_t> active,
                                                     std::span<const std::vector<matrix>> factors,
                                                     std::int64_t r) {
    check_active(active, factors.size(), "top_large_gram_groups");
    return each_group<matrix>(
        active, [this](std::size_t g) { select(*group_batch(), group_members(g)); },
        [&](std::size_t i) { return top_large_gram(s, factors[i], r); });
}

std::vector<std::pair<matrix, matrix>> LinalgOps::qr_many(std::vector<matrix> a) {
    std::vector<std::pair<matrix, matrix>> out;
    out.reserve(a.size());
    for (auto& m : a)
        out.push_back(qr(std::move(m)));
    return out;
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
