// HostLinalgOps (see host_linalg_ops.hpp): the same sequence of products as CudaLinalgOps, on the CPU,
// each loop over members (or over column / row blocks) split statically across the worker pool.
#include "engine/compress/host_linalg_ops.hpp"

#include "engine/compress/eigen_floor.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

namespace lorafleet::compress {

namespace {

// op() of the stored block giving T_k (U: (B^T)^T, V: A^T as stored) and T_k^T.
op how(ops_side s) {
    return s == ops_side::u ? op::t : op::n;
}
op how_t(ops_side s) {
    return s == ops_side::u ? op::n : op::t;
}

// Rows [i0, i1) of a column-major matrix as views.
template <class T> basic_view<T> row_block(const basic_matrix<T>& m, std::int64_t i0, std::int64_t i1) {
    return {m.data.data() + i0, i1 - i0, m.cols, std::max<std::int64_t>(1, m.rows)};
}
template <class T> basic_mut_view<T> row_block(basic_matrix<T>& m, std::int64_t i0, std::int64_t i1) {
    return {m.data.data() + i0, i1 - i0, m.cols, std::max<std::int64_t>(1, m.rows)};
}

// [i0, i1) of part `p` of `parts` equal pieces of [0, n).
std::pair<std::int64_t, std::int64_t> piece(std::int64_t n, std::size_t p, std::size_t parts) {
    return {n * static_cast<std::int64_t>(p) / static_cast<std::int64_t>(parts),
            n * static_cast<std::int64_t>(p + 1) / static_cast<std::int64_t>(parts)};
}

// G = X^T X [m, m] (transpose_first) or G += X X^T [d, d], as column blocks of one GEMM per worker.
template <class T>
void parallel_gram(thread_pool& pool, const basic_matrix<T>& x, bool transpose_first, basic_matrix<T>& g) {
    const auto n = transpose_first ? x.cols : x.rows; // side of g
    const auto inner = transpose_first ? x.rows : x.cols;
    check_shape(g.rows == n && g.cols == n, "parallel_gram", "output has the wrong shape");
    const auto parts = static_cast<std::size_t>(pool.size());
    const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(inner);
    pool.parallel_for(
        parts,
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t part = b; part < e; ++part) {
                const auto [j0, j1] = piece(n, part, parts);
                if (j1 == j0) continue;
                if (transpose_first) // G[:, j0:j1] = X^T X[:, j0:j1]
                    gemm(op::t, x.view(), op::n, x.view().block_cols(j0, j1 - j0),
                         g.mut().block_cols(j0, j1 - j0));
                else // G[:, j0:j1] += X (X[j0:j1, :])^T
                    gemm(op::n, x.view(), op::t, row_block(x, j0, j1), g.mut().block_cols(j0, j1 - j0), T(1),
                         T(1));
            }
        },
        flops);
}

} // namespace

HostLinalgOps::HostLinalgOps(int threads)
    : m_pool(std::make_unique<thread_pool>(threads > 0 ? threads : hardware_threads())) {}

void HostLinalgOps::select(const module_batch& batch, std::span<const std::size_t> members) {
    batch.validate();
    set_layout(batch, members);
    m_batch = &batch;
    m_members.assign(members.begin(), members.end());
}

view HostLinalgOps::stored(ops_side s, std::size_t k) const {
    return s == ops_side::u ? m_batch->b_t(m_members[k]) : m_batch->a_t(m_members[k]);
}

matrix HostLinalgOps::project(ops_side s, const matrix& x) {
    const auto& l = layout();
    check_shape(x.rows == l.dim(s), "ops.project", "basis rows differ from the module dimension");
    matrix out(l.total, x.cols);
    const auto ld = std::max<std::int64_t>(1, l.total);
    m_pool->parallel_for(
        l.size(),
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k)
                gemm(how_t(s), stored(s, k), op::n, x,
                     mut_view{out.data.data() + l.offsets[k], l.ranks[k], x.cols, ld});
        },
        2.0 * static_cast<double>(l.dim(s)) * static_cast<double>(l.total) * static_cast<double>(x.cols));
    return out;
}

template <class Fn>
matrix HostLinalgOps::sum_members(ops_side s, std::int64_t cols, double flops, const Fn& fn) {
    const auto& l = layout();
    const auto d = l.dim(s);
    std::vector<matrix> acc(static_cast<std::size_t>(m_pool->size()));
    m_pool->parallel_for(
        l.size(),
        [&](std::size_t b, std::size_t e, int t) {
            auto& a = acc[static_cast<std::size_t>(t)];
            a = matrix(d, cols);
            for (std::size_t k = b; k < e; ++k) {
                const matrix z = fn(k);
                if (!z.empty()) gemm(how(s), stored(s, k), op::n, z, a.mut(), 1.0f, 1.0f);
            }
        },
        flops);
    // Partials in worker order (deterministic); the first one is the result when it is the only one.
    matrix out;
    for (auto& a : acc) {
        if (a.empty()) continue;
        if (out.empty()) {
            out = std::move(a);
            continue;
        }
        for (std::size_t i = 0; i < out.data.size(); ++i)
            out.data[i] += a.data[i];
    }
    return out.empty() ? matrix(d, cols) : out;
}

matrix HostLinalgOps::accumulate(ops_side s, const matrix& z) {
    const auto& l = layout();
    check_shape(z.rows == l.total, "ops.accumulate", "rows differ from the working set's total rank");
    const auto ld = std::max<std::int64_t>(1, l.total);
    return sum_members(s, z.cols,
                       2.0 * static_cast<double>(l.dim(s)) * static_cast<double>(l.total) *
                           static_cast<double>(z.cols),
                       [&](std::size_t k) {
                           return copy(view{z.data.data() + l.offsets[k], l.ranks[k], z.cols, ld});
                       });
}

matrix HostLinalgOps::apply_blocks(ops_side s, const std::vector<matrix>& c, const matrix& q) {
    const auto& l = layout();
    check_shape(c.size() == l.size(), "ops.apply_blocks", "one block per member expected");
    check_shape(q.rows == l.dim(s), "ops.apply_blocks", "rows differ from the module dimension");
    // Fused per member: T_k (C_k (T_k^T Q)), so no [R, c] intermediate crosses the workers.
    return sum_members(s, q.cols,
                       4.0 * static_cast<double>(l.dim(s)) * static_cast<double>(l.total) *
                           static_cast<double>(q.cols),
                       [&](std::size_t k) {
                           if (c[k].empty()) return matrix();
                           const matrix p = gemm(how_t(s), stored(s, k), op::n, q); // [r_k, c]
                           return gemm(op::n, c[k], op::n, p);
                       });
}

std::vector<matrix> HostLinalgOps::block_grams(ops_side s) {
    const auto& l = layout();
    std::vector<matrix> out(l.size());
    double flops = 0.0;
    for (const auto r : l.ranks)
        flops += 2.0 * static_cast<double>(l.dim(s) * r * r);
    m_pool->parallel_for(
        l.size(),
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k)
                out[k] = gemm(how_t(s), stored(s, k), how(s), stored(s, k));
        },
        flops);
    return out;
}

std::vector<dmatrix> HostLinalgOps::block_grams_exact(ops_side s) {
    const auto& l = layout();
    std::vector<dmatrix> out(l.size());
    double flops = 0.0;
    for (const auto r : l.ranks)
        flops += 2.0 * static_cast<double>(l.dim(s) * r * r);
    m_pool->parallel_for(
        l.size(),
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k) {
                const dmatrix t = to_double(stored(s, k)); // the fp32 factors are exact in double
                out[k] = gemm(how_t(s), t.view(), how(s), t.view());
            }
        },
        flops);
    return out;
}

std::vector<dmatrix> HostLinalgOps::project_exact(ops_side s, const matrix& x) {
    const auto& l = layout();
    check_shape(x.rows == l.dim(s), "ops.project_exact", "basis rows differ from the module dimension");
    const dmatrix xd = to_double(x);
    std::vector<dmatrix> out(l.size());
    m_pool->parallel_for(
        l.size(),
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k) {
                const dmatrix t = to_double(stored(s, k));
                out[k] = gemm(how_t(s), t.view(), op::n, xd.view());
            }
        },
        2.0 * static_cast<double>(l.dim(s)) * static_cast<double>(l.total) * static_cast<double>(x.cols));
    return out;
}

matrix HostLinalgOps::build_x(ops_side s, const std::vector<matrix>& factors, std::size_t first,
                              std::size_t last) {
    std::vector<std::int64_t> offset(last - first + 1, 0);
    for (std::size_t k = first; k < last; ++k)
        offset[k - first + 1] = offset[k - first] + factors[k].cols;
    const auto d = layout().dim(s);
    matrix x(d, offset.back());
    double flops = 0.0;
    for (std::size_t k = first; k < last; ++k)
        flops += 2.0 * static_cast<double>(d * factors[k].rows * factors[k].cols);
    m_pool->parallel_for(
        last - first,
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t j = b; j < e; ++j) {
                const auto& f = factors[first + j];
                if (f.cols == 0) continue;
                gemm(how(s), stored(s, first + j), op::n, f, x.mut().block_cols(offset[j], f.cols));
            }
        },
        flops);
    return x;
}

// Both eigen paths: X in fp32 (the factors' precision), then the Gram, the eigensolver and X E in
// double on the widened X (fp32 products are exact in double), the same steps as CudaLinalgOps. An fp32
// Gram squares X's condition number and an fp32 eigensolver leaves eps32 ||G|| / gap in the vectors;
// in double the result is the exact answer for the fp32 X up to ~1e-16 ||G|| / gap, so two backends
// (or thread counts) that round X differently agree to the conditioning of X, not of its Gram.
// Directions past X's numerical rank are fixed ones (eigen_floor.hpp), the same on every backend.
matrix HostLinalgOps::top_small_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t k) {
    check_shape(factors.size() == layout().size(), "ops.top_small_gram", "one factor per member expected");
    const dmatrix x = to_double(build_x(s, factors, 0, factors.size())); // [d, m]
    check_shape(k >= 0 && k <= x.cols, "ops.top_small_gram", "k exceeds the width of X");
    if (k == 0) return matrix(x.rows, 0);
    dmatrix g(x.cols, x.cols);
    parallel_gram(*m_pool, x, true, g); // X^T X
    const auto eig = top_eigenvectors(std::move(g), k);
    dmatrix y(x.rows, k); // X E, by row blocks
    const auto parts = static_cast<std::size_t>(m_pool->size());
    m_pool->parallel_for(
        parts,
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t p = b; p < e; ++p) {
                const auto [i0, i1] = piece(x.rows, p, parts);
                if (i1 > i0)
                    gemm(op::n, row_block(x, i0, i1), op::n, eig.vectors.view(), row_block(y, i0, i1));
            }
        },
        2.0 * static_cast<double>(x.rows) * static_cast<double>(x.cols) * static_cast<double>(k));
    const auto keep = eigen_rank(eig.values); // columns past X's numerical rank: fixed directions
    if (keep < k && k <= x.rows)
        complete_null_columns(y, keep,
                              eig.values[0] > 0.0 ? std::sqrt(eigen_floor_ratio * eig.values[0]) : 1.0);
    return to_float(y.view());
}

matrix HostLinalgOps::top_large_gram(ops_side s, const std::vector<matrix>& factors, std::int64_t r) {
    check_shape(factors.size() == layout().size(), "ops.top_large_gram", "one factor per member expected");
    const auto d = layout().dim(s);
    dmatrix mm(d, d);
    std::size_t first = 0;
    while (first < factors.size()) {
        std::size_t last = first;
        std::int64_t width = 0;
        while (last < factors.size() && (width == 0 || width + factors[last].cols <= ops_large_gram_chunk))
            width += factors[last++].cols;
        const dmatrix x = to_double(build_x(s, factors, first, last));
        if (x.cols > 0) parallel_gram(*m_pool, x, false, mm); // M += X X^T
        first = last;
    }
    auto eig = top_eigenvectors(std::move(mm), r);
    complete_null_columns(eig.vectors, eigen_rank(eig.values), 1.0); // past the numerical rank: fixed
    return to_float(eig.vectors.view());
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
    double flops = 0.0;
    for (const auto w : widths)
        flops += 2.0 * static_cast<double>(w * w) * static_cast<double>(l.total);
    m_pool->parallel_for(
        l.size(),
        [&](std::size_t b, std::size_t e, int) {
            for (std::size_t k = b; k < e; ++k)
                for (std::size_t j = 0; j < offsets.size(); ++j) {
                    if (widths[j] == 0) continue;
                    const view a{p.data.data() + l.offsets[k] + offsets[j] * ld, l.ranks[k], widths[j], ld};
                    const view c{q.data.data() + l.offsets[k] + offsets[j] * ld, l.ranks[k], widths[j], ld};
                    out(static_cast<std::int64_t>(k), static_cast<std::int64_t>(j)) =
                        frobenius2(gemm(op::t, a, op::n, c));
                }
        },
        flops);
    return out;
}

std::pair<matrix, matrix> HostLinalgOps::qr(matrix a) {
    return compress::qr(std::move(a));
}

void HostLinalgOps::select_validated(const module_batch& batch, std::span<const std::size_t> members) {
    set_layout(batch, members);
    m_batch = &batch;
    m_members.assign(members.begin(), members.end());
}

void HostLinalgOps::select_groups(const module_batch& batch,
                                  std::span<const std::vector<std::size_t>> groups) {
    set_group_layouts(batch, groups); // validates
    while (m_group_ops.size() < groups.size())
        m_group_ops.push_back(std::make_unique<HostLinalgOps>(1));
    for (std::size_t g = 0; g < groups.size(); ++g)
        m_group_ops[g]->select_validated(batch, groups[g]);
}

template <class Out, class Fn>
std::vector<Out> HostLinalgOps::run_groups(std::span<const std::size_t> active, double flops, const Fn& fn) {
    std::vector<Out> out(active.size());
    // Largest groups first (a static longest-processing-time order), pulled by whichever worker is free;
    // every result lands in its own slot, so the schedule never changes a value.
    std::vector<std::size_t> order(active.size());
    for (std::size_t i = 0; i < order.size(); ++i)
        order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        return group_layout(active[a]).total > group_layout(active[b]).total;
    });
    std::atomic<std::size_t> next{0};
    m_pool->parallel_for(
        static_cast<std::size_t>(m_pool->size()),
        [&](std::size_t, std::size_t, int) {
            for (std::size_t j = next.fetch_add(1); j < order.size(); j = next.fetch_add(1))
                out[order[j]] = fn(order[j], *m_group_ops[active[order[j]]]);
        },
        flops);
    return out;
}

namespace {

// Work estimates of the grouped calls: 2 d R_g c summed over the active groups.
template <class Cols>
double grouped_flops(const LinalgOps& ops, ops_side s, std::span<const std::size_t> active,
                     const Cols& cols) {
    double f = 0.0;
    for (std::size_t i = 0; i < active.size(); ++i) {
        const auto& l = ops.group_layout(active[i]);
        f +=
            2.0 * static_cast<double>(l.dim(s)) * static_cast<double>(l.total) * static_cast<double>(cols(i));
    }
    return f;
}

} // namespace

std::vector<matrix> HostLinalgOps::project_groups(ops_side s, std::span<const std::size_t> active,
                                                  std::span<const matrix> x) {
    check_active(active, x.size(), "project_groups");
    return run_groups<matrix>(active,
                              grouped_flops(*this, s, active, [&](std::size_t i) { return x[i].cols; }),
                              [&](std::size_t i, HostLinalgOps& g) { return g.project(s, x[i]); });
}

std::vector<matrix> HostLinalgOps::accumulate_groups(ops_side s, std::span<const std::size_t> active,
                                                     std::span<const matrix> z) {
    check_active(active, z.size(), "accumulate_groups");
    return run_groups<matrix>(active,
                              grouped_flops(*this, s, active, [&](std::size_t i) { return z[i].cols; }),
                              [&](std::size_t i, HostLinalgOps& g) { return g.accumulate(s, z[i]); });
}

std::vector<matrix> HostLinalgOps::apply_blocks_groups(ops_side s, std::span<const std::size_t> active,
                                                       std::span<const std::vector<matrix>> c,
                                                       std::span<const matrix> q) {
    check_active(active, c.size(), "apply_blocks_groups");
    check_active(active, q.size(), "apply_blocks_groups");
    return run_groups<matrix>(active,
                              2.0 * grouped_flops(*this, s, active, [&](std::size_t i) { return q[i].cols; }),
                              [&](std::size_t i, HostLinalgOps& g) { return g.apply_blocks(s, c[i], q[i]); });
}

std::vector<std::vector<matrix>> HostLinalgOps::block_grams_groups(ops_side s,
                                                                   std::span<const std::size_t> active) {
    check_active(active, active.size(), "block_grams_groups");
    return run_groups<std::vector<matrix>>(active,
                                           grouped_flops(*this, s, active, [](std::size_t) { return 8; }),
                                           [&](std::size_t, HostLinalgOps& g) { return g.block_grams(s); });
}

std::vector<std::vector<dmatrix>>
HostLinalgOps::block_grams_exact_groups(ops_side s, std::span<const std::size_t> active) {
    check_active(active, active.size(), "block_grams_exact_groups");
    return run_groups<std::vector<dmatrix>>(
        active, grouped_flops(*this, s, active, [](std::size_t) { return 8; }),
        [&](std::size_t, HostLinalgOps& g) { return g.block_grams_exact(s); });
}

std::vector<matrix> HostLinalgOps::top_small_gram_groups(ops_side s, std::span<const std::size_t> active,
                                                         std::span<const std::vector<matrix>> factors,
                                                         std::span<const std::int64_t> k) {
    check_active(active, factors.size(), "top_small_gram_groups");
    check_active(active, k.size(), "top_small_gram_groups");
    return run_groups<matrix>(
        active, grouped_flops(*this, s, active, [&](std::size_t i) { return 2 * k[i]; }),
        [&](std::size_t i, HostLinalgOps& g) { return g.top_small_gram(s, factors[i], k[i]); });
}

std::vector<matrix> HostLinalgOps::top_large_gram_groups(ops_side s, std::span<const std::size_t> active,
                                                         std::span<const std::vector<matrix>> factors,
                                                         std::int64_t r) {
    check_active(active, factors.size(), "top_large_gram_groups");
    double flops = 0.0;
    for (const auto g : active)
        flops += 4.0 * std::pow(static_cast<double>(group_layout(g).dim(s)), 3);
    return run_groups<matrix>(
        active, flops, [&](std::size_t i, HostLinalgOps& g) { return g.top_large_gram(s, factors[i], r); });
}

std::vector<std::pair<matrix, matrix>> HostLinalgOps::qr_many(std::vector<matrix> a) {
    std::vector<std::pair<matrix, matrix>> out(a.size());
    double flops = 0.0;
    for (const auto& m : a)
        flops +=
            4.0 * static_cast<double>(m.rows) * static_cast<double>(m.cols) * static_cast<double>(m.cols);
    std::atomic<std::size_t> next{0};
    m_pool->parallel_for(
        static_cast<std::size_t>(m_pool->size()),
        [&](std::size_t, std::size_t, int) {
            for (std::size_t j = next.fetch_add(1); j < a.size(); j = next.fetch_add(1))
                out[j] = compress::qr(std::move(a[j]));
        },
        flops);
    return out;
}

} // namespace lorafleet::compress
