// HostLinalgOps (see host_linalg_ops.hpp): the same sequence of products as CudaLinalgOps, on the CPU.
#include "engine/compress/host_linalg_ops.hpp"

#include "engine/core/error.hpp"

#include <algorithm>

namespace lorafleet::compress {

void HostLinalgOps::select(const module_batch& batch, std::span<const std::size_t> members) {
    batch.validate();
    set_layout(batch, members);
    m_batch = &batch;
    m_members.assign(members.begin(), members.end());
}

view HostLinalgOps::stored(ops_side s, std::size_t k) const {
    return s == ops_side::u ? m_batch->b_t(m_members[k]) : m_batch->a_t(m_members[k]);
}

namespace {
// op() of the stored block giving T_k (U: (B^T)^T, V: A^T as stored) and T_k^T.
op how(ops_side s) {
    return s == ops_side::u ? op::t : op::n;
}
op how_t(ops_side s) {
    return s == ops_side::u ? op::n : op::t;
}
} // namespace

matrix HostLinalgOps::project(ops_side s, const matrix& x) {
    const auto& l = layout();
    check_shape(x.rows == l.dim(s), "ops.project", "basis rows differ from the module dimension");
    matrix out(l.total, x.cols);
    for (std::size_t k = 0; k < l.size(); ++k)
        gemm(
            how_t(s), stored(s, k), op::n, x,
            mut_view{out.data.data() + l.offsets[k], l.ranks[k], x.cols, std::max<std::int64_t>(1, l.total)});
    return out;
}

matrix HostLinalgOps::accumulate(ops_side s, const matrix& z) {
    const auto& l = layout();
    check_shape(z.rows == l.total, "ops.accumulate", "rows differ from the working set's total rank");
    matrix out(l.dim(s), z.cols);
    for (std::size_t k = 0; k < l.size(); ++k)
        gemm(how(s), stored(s, k), op::n,
             view{z.data.data() + l.offsets[k], l.ranks[k], z.cols, std::max<std::int64_t>(1, l.total)},
             out.mut(), 1.0f, 1.0f);
    return out;
}

matrix HostLinalgOps::apply_blocks(ops_side s, const std::vector<matrix>& c, const matrix& q) {
    const auto& l = layout();
    check_shape(c.size() == l.size(), "ops.apply_blocks", "one block per member expected");
    const matrix p = project(s, q);
    matrix p2(l.total, q.cols);
    for (std::size_t k = 0; k < l.size(); ++k) {
        if (c[k].empty()) continue;
        const auto ld = std::max<std::int64_t>(1, l.total);
        gemm(op::n, c[k], op::n, view{p.data.data() + l.offsets[k], l.ranks[k], q.cols, ld},
             mut_view{p2.data.data() + l.offsets[k], l.ranks[k], q.cols, ld});
    }
    return accumulate(s, p2);
}

std::vector<matrix> HostLinalgOps::block_grams(ops_side s) {
    const auto& l = layout();
    std::vector<matrix> out(l.size());
    for (std::size_t k = 0; k < l.size(); ++k)
        out[k] = gemm(how_t(s), stored(s, k), how(s), stored(s, k));
    return out;
}

matrix HostLinalgOps::build_x(ops_side s, const std::vector<matrix>& factors, std::size_t first,
                              std::size_t last) const {
    std::int64_t width = 0;
    for (std::size_t k = first; k < last; ++k)
        width += factors[k].cols;
    matrix x(layout().dim(s), width);
    std::int64_t off = 0;
    for (std::size_t k = first; k < last; ++k) {
        const auto& f = factors[k];
        if (f.cols == 0) continue;
        gemm(how(s), stored(s, k), op::n, f, x.mut().block_cols(off, f.cols));
        off += f.cols;
    }
    return x;
}

matrix HostLinalgOps::top_small_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t k) {
    check_shape(factors.size() == layout().size(), "ops.top_small_gram", "one factor per member expected");
    const matrix x = build_x(s, factors, 0, factors.size());
    check_shape(k >= 0 && k <= x.cols, "ops.top_small_gram", "k exceeds the width of X");
    if (k == 0) return matrix(x.rows, 0);
    const auto eig = top_eigenvectors(gemm(op::t, x, op::n, x), k);
    return gemm(op::n, x, op::n, eig.vectors);
}

matrix HostLinalgOps::top_large_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t r) {
    check_shape(factors.size() == layout().size(), "ops.top_large_gram", "one factor per member expected");
    const auto d = layout().dim(s);
    matrix mm(d, d);
    std::size_t first = 0;
    while (first < factors.size()) {
        std::size_t last = first;
        std::int64_t width = 0;
        while (last < factors.size() && (width == 0 || width + factors[last].cols <= ops_large_gram_chunk))
            width += factors[last++].cols;
        const matrix x = build_x(s, factors, first, last);
        if (x.cols > 0) gemm(op::n, x, op::t, x, mm.mut(), 1.0f, 1.0f);
        first = last;
    }
    return top_eigenvectors(std::move(mm), r).vectors;
}

dmatrix HostLinalgOps::block_core_norms(const matrix& xu, const matrix& xv,
                                        std::span<const std::int64_t> offsets,
                                        std::span<const std::int64_t> widths) {
    const auto& l = layout();
    check_shape(offsets.size() == widths.size() && xu.cols == xv.cols, "ops.block_core_norms", "block lists");
    for (std::size_t j = 0; j < offsets.size(); ++j)
        check_shape(offsets[j] >= 0 && widths[j] >= 0 && offsets[j] + widths[j] <= xu.cols,
                    "ops.block_core_norms", "block outside the columns");
    const matrix p = project(ops_side::u, xu), q = project(ops_side::v, xv);
    const auto ld = std::max<std::int64_t>(1, l.total);
    dmatrix out(static_cast<std::int64_t>(l.size()), static_cast<std::int64_t>(offsets.size()));
    for (std::size_t k = 0; k < l.size(); ++k)
        for (std::size_t j = 0; j < offsets.size(); ++j) {
            if (widths[j] == 0) continue;
            const view a{p.data.data() + l.offsets[k] + offsets[j] * ld, l.ranks[k], widths[j], ld};
            const view b{q.data.data() + l.offsets[k] + offsets[j] * ld, l.ranks[k], widths[j], ld};
            out(static_cast<std::int64_t>(k), static_cast<std::int64_t>(j)) =
                frobenius2(gemm(op::t, a, op::n, b));
        }
    return out;
}

std::pair<matrix, matrix> HostLinalgOps::qr(matrix a) {
    return compress::qr(std::move(a));
}

} // namespace lorafleet::compress
