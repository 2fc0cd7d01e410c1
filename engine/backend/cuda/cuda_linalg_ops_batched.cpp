// CudaLinalgOps' grouped operations (see the batched block of cuda_linalg_ops.hpp): every active group's
// product in ONE grouped GEMM over a group-ordered device copy of T_u / T_v, inputs packed into one upload
// and results into one download; top_small_gram_groups' eigenproblems in one batched fp64 syev. The
// arithmetic per group is the single operation's (fp32 products; fp64 Gram, eigensolver and X E), so a
// group's result equals CudaLinalgOps' single operation on that working set up to fp rounding. qr_many
// factors every matrix in one kernel (kernels::qr_thin_many: Householder in double, one block per matrix),
// so its Q and R are the fp32 roundings of a double QR — closer to exact than qr()'s fp32 cuSOLVER ones.
#include "engine/backend/cuda/cuda_linalg_ops.hpp"

#include "engine/backend/cuda/cuda_status.hpp"
#include "engine/compress/compress_backend.hpp"
#include "engine/core/error.hpp"
#include "kernels/linalg_batched.hpp"
#include "kernels/linalg_device.hpp"

#include <algorithm>

namespace lorafleet::compress {

namespace kd = lorafleet::kernels;

struct CudaLinalgOps::batched_state {
    kd::device_buffer gu, gv;          // T_u, T_v with the groups' columns in group order
    std::vector<std::int64_t> col0;    // first column of group g in gu / gv
    std::vector<std::int64_t> member0; // first member (over all groups) of group g
    kd::device_buffer in, out, p, p2, blocks, x, xd, gram, evals, evec, yd, meta, scratch, work;
    batched_stats stats;
};

void CudaLinalgOps::batched_state_deleter::operator()(batched_state* p) const noexcept {
    delete p;
}

namespace {

constexpr std::size_t F = sizeof(float);

template <class Fn> auto guarded(Fn&& f) -> decltype(f()) {
    return backend::translate_linalg("cuda", std::forward<Fn>(f));
}

// Packs matrices column-major one after another; offsets in elements.
std::vector<float> pack(std::span<const matrix> m, std::vector<std::int64_t>& offsets) {
    std::vector<float> out;
    offsets.assign(m.size(), 0);
    for (std::size_t i = 0; i < m.size(); ++i) {
        offsets[i] = static_cast<std::int64_t>(out.size());
        out.insert(out.end(), m[i].data.begin(), m[i].data.end());
    }
    return out;
}

} // namespace

// Device buffers of the grouped operations grow through the ops' budget handling: cached resident
// modules are freed before an allocation fails (cuda_linalg_ops.cpp, reserve_evicting).
struct batched_access {
    template <class T> static T* grow(CudaLinalgOps& ops, kd::device_buffer& b, std::int64_t count) {
        ops.reserve_evicting(b, static_cast<std::size_t>(std::max<std::int64_t>(count, 1)) * sizeof(T));
        return static_cast<T*>(b.data());
    }
};

CudaLinalgOps::batched_stats CudaLinalgOps::batched_counters() const {
    return mb ? mb->stats : batched_stats{};
}

void CudaLinalgOps::select_groups(const module_batch& batch,
                                  std::span<const std::vector<std::size_t>> groups) {
    set_group_layouts(batch, groups);    // validates
    select(batch, all_positions(batch)); // resident, T in batch order
    if (!mb) mb.reset(new batched_state);
    auto& b = *mb;
    const auto view = working_set_view();
    guarded([&] {
        std::vector<std::int64_t> batch_off(batch.size() + 1, 0);
        for (std::size_t p = 0; p < batch.size(); ++p)
            batch_off[p + 1] = batch_off[p] + batch.adapters[p].rank;
        std::vector<std::int64_t> index;
        b.col0.assign(groups.size(), 0);
        b.member0.assign(groups.size(), 0);
        std::int64_t members = 0;
        for (std::size_t g = 0; g < groups.size(); ++g) {
            b.col0[g] = static_cast<std::int64_t>(index.size());
            b.member0[g] = members;
            members += static_cast<std::int64_t>(groups[g].size());
            for (const auto p : groups[g])
                for (std::int64_t j = 0; j < batch.adapters[p].rank; ++j)
                    index.push_back(batch_off[p] + j);
        }
        const auto cols = static_cast<std::int64_t>(index.size());
        auto* di = batched_access::grow<std::int64_t>(*this, b.meta, cols);
        kd::upload(*view.ctx, index.data(), di, index.size() * sizeof(std::int64_t));
        float* gu = batched_access::grow<float>(*this, b.gu, batch.d_out * cols);
        float* gv = batched_access::grow<float>(*this, b.gv, batch.d_in * cols);
        b.stats.launches += kd::gather_columns(*view.ctx, view.u, gu, batch.d_out, cols, di);
        b.stats.launches += kd::gather_columns(*view.ctx, view.v, gv, batch.d_in, cols, di);
        ++b.stats.transfers;
        ++b.stats.calls;
    });
}

std::vector<matrix> CudaLinalgOps::project_groups(ops_side s, std::span<const std::size_t> active,
                                                  std::span<const matrix> x) {
    check_active(active, x.size(), "project_groups");
    if (active.empty()) return {};
    auto& b = *mb;
    const auto d = s == ops_side::u ? group_layout(active[0]).d_out : group_layout(active[0]).d_in;
    for (const auto& m : x)
        check_shape(m.rows == d, "ops.project_groups", "basis rows differ from the module dimension");
    return guarded([&] {
        auto& ctx = *working_set_view().ctx;
        const float* t = s == ops_side::u ? b.gu.f32() : b.gv.f32();
        std::vector<std::int64_t> xoff, ooff(active.size(), 0);
        const auto packed = pack(x, xoff);
        std::int64_t total = 0;
        for (std::size_t i = 0; i < active.size(); ++i) {
            ooff[i] = total;
            total += group_layout(active[i]).total * x[i].cols;
        }
        float* dx = batched_access::grow<float>(*this, b.in, static_cast<std::int64_t>(packed.size()));
        if (!packed.empty()) kd::upload(ctx, packed.data(), dx, packed.size() * F);
        float* o = batched_access::grow<float>(*this, b.out, total);
        std::vector<kd::gemm_item> items(active.size());
        for (std::size_t i = 0; i < active.size(); ++i) {
            const auto& l = group_layout(active[i]);
            items[i] = {l.total, x[i].cols,   d,      t + d * b.col0[active[i]], d, dx + xoff[i],
                        d,       o + ooff[i], l.total};
        }
        b.stats.launches += kd::gemm_grouped(ctx, kd::mat_op::t, kd::mat_op::n, 1.0f, 0.0f, items.data(),
                                             items.size(), b.scratch);
        std::vector<float> host(static_cast<std::size_t>(total));
        if (total > 0) kd::download(ctx, o, host.data(), host.size() * F);
        b.stats.transfers += 3;
        ++b.stats.calls;
        std::vector<matrix> out(active.size());
        for (std::size_t i = 0; i < active.size(); ++i) {
            out[i] = matrix(group_layout(active[i]).total, x[i].cols);
            std::copy_n(host.begin() + ooff[i], out[i].data.size(), out[i].data.begin());
        }
        return out;
    });
}

std::vector<matrix> CudaLinalgOps::accumulate_groups(ops_side s, std::span<const std::size_t> active,
                                                     std::span<const matrix> z) {
    check_active(active, z.size(), "accumulate_groups");
    if (active.empty()) return {};
    auto& b = *mb;
    const auto d = s == ops_side::u ? group_layout(active[0]).d_out : group_layout(active[0]).d_in;
    for (std::size_t i = 0; i < active.size(); ++i)
        check_shape(z[i].rows == group_layout(active[i]).total, "ops.accumulate_groups",
                    "rows differ from the group's total rank");
    return guarded([&] {
        auto& ctx = *working_set_view().ctx;
        const float* t = s == ops_side::u ? b.gu.f32() : b.gv.f32();
        std::vector<std::int64_t> zoff, ooff(active.size(), 0);
        const auto packed = pack(z, zoff);
        std::int64_t total = 0;
        for (std::size_t i = 0; i < active.size(); ++i) {
            ooff[i] = total;
            total += d * z[i].cols;
        }
        float* dz = batched_access::grow<float>(*this, b.in, static_cast<std::int64_t>(packed.size()));
        if (!packed.empty()) kd::upload(ctx, packed.data(), dz, packed.size() * F);
        float* o = batched_access::grow<float>(*this, b.out, total);
        std::vector<kd::gemm_item> items(active.size());
        for (std::size_t i = 0; i < active.size(); ++i) {
            const auto& l = group_layout(active[i]);
            items[i] = {d,       z[i].cols,   l.total, t + d * b.col0[active[i]], d, dz + zoff[i],
                        l.total, o + ooff[i], d};
        }
        b.stats.launches += kd::gemm_grouped(ctx, kd::mat_op::n, kd::mat_op::n, 1.0f, 0.0f, items.data(),
                                             items.size(), b.scratch);
        std::vector<float> host(static_cast<std::size_t>(total));
        if (total > 0) kd::download(ctx, o, host.data(), host.size() * F);
        b.stats.transfers += 3;
        ++b.stats.calls;
        std::vector<matrix> out(active.size());
        for (std::size_t i = 0; i < active.size(); ++i) {
            out[i] = matrix(d, z[i].cols);
            std::copy_n(host.begin() + ooff[i], out[i].data.size(), out[i].data.begin());
        }
        return out;
    });
}

std::vector<matrix> CudaLinalgOps::apply_blocks_groups(ops_side s, std::span<const std::size_t> active,
                                                       std::span<const std::vector<matrix>> c,
                                                       std::span<const matrix> q) {
    check_active(active, c.size(), "apply_blocks_groups");
    check_active(active, q.size(), "apply_blocks_groups");
    if (active.empty()) return {};
    auto& b = *mb;
    const auto d = s == ops_side::u ? group_layout(active[0]).d_out : group_layout(active[0]).d_in;
    for (std::size_t i = 0; i < active.size(); ++i) {
        const auto& l = group_layout(active[i]);
        check_shape(c[i].size() == l.size(), "ops.apply_blocks_groups", "one block per member expected");
        check_shape(q[i].rows == d, "ops.apply_blocks_groups", "rows differ from the module dimension");
        for (std::size_t k = 0; k < c[i].size(); ++k)
            check_shape(c[i][k].empty() || (c[i][k].rows == l.ranks[k] && c[i][k].cols == l.ranks[k]),
                        "ops.apply_blocks_groups", "block shape");
    }
    return guarded([&] {
        auto& ctx = *working_set_view().ctx;
        const float* t = s == ops_side::u ? b.gu.f32() : b.gv.f32();
        std::vector<std::int64_t> qoff, poff(active.size(), 0), ooff(active.size(), 0);
        const auto packed_q = pack(q, qoff);
        std::vector<float> packed_c;
        std::vector<std::vector<std::int64_t>> coff(active.size());
        std::int64_t ptotal = 0, ototal = 0;
        for (std::size_t i = 0; i < active.size(); ++i) {
            poff[i] = ptotal;
            ptotal += group_layout(active[i]).total * q[i].cols;
            ooff[i] = ototal;
            ototal += d * q[i].cols;
            coff[i].resize(c[i].size());
            for (std::size_t k = 0; k < c[i].size(); ++k) {
                coff[i][k] = static_cast<std::int64_t>(packed_c.size());
                packed_c.insert(packed_c.end(), c[i][k].data.begin(), c[i][k].data.end());
            }
        }
        float* dq = batched_access::grow<float>(*this, b.in, static_cast<std::int64_t>(packed_q.size()));
        if (!packed_q.empty()) kd::upload(ctx, packed_q.data(), dq, packed_q.size() * F);
        float* dc = batched_access::grow<float>(*this, b.blocks, static_cast<std::int64_t>(packed_c.size()));
        if (!packed_c.empty()) kd::upload(ctx, packed_c.data(), dc, packed_c.size() * F);
        float* p = batched_access::grow<float>(*this, b.p, ptotal);
        float* p2 = batched_access::grow<float>(*this, b.p2, ptotal);
        float* o = batched_access::grow<float>(*this, b.out, ototal);
        // P_g = T_g^T Q_g; P2_g = blkdiag(C_k) P_g (an empty block leaves zeros); out_g = T_g P2_g.
        std::vector<kd::gemm_item> items(active.size());
        for (std::size_t i = 0; i < active.size(); ++i) {
            const auto& l = group_layout(active[i]);
            items[i] = {l.total, q[i].cols,   d,      t + d * b.col0[active[i]], d, dq + qoff[i],
                        d,       p + poff[i], l.total};
        }
        b.stats.launches += kd::gemm_grouped(ctx, kd::mat_op::t, kd::mat_op::n, 1.0f, 0.0f, items.data(),
                                             items.size(), b.scratch);
        kd::fill_zero(ctx, p2, static_cast<std::size_t>(std::max<std::int64_t>(ptotal, 1)) * F);
        ++b.stats.launches;
        std::vector<kd::gemm_item> blocks;
        for (std::size_t i = 0; i < active.size(); ++i) {
            const auto& l = group_layout(active[i]);
            for (std::size_t k = 0; k < c[i].size(); ++k) {
                if (c[i][k].empty()) continue;
                const auto r = l.ranks[k];
                blocks.push_back({r, q[i].cols, r, dc + coff[i][k], r, p + poff[i] + l.offsets[k], l.total,
                                  p2 + poff[i] + l.offsets[k], l.total});
            }
        }
        b.stats.launches += kd::gemm_grouped(ctx, kd::mat_op::n, kd::mat_op::n, 1.0f, 0.0f, blocks.data(),
                                             blocks.size(), b.scratch);
        for (std::size_t i = 0; i < active.size(); ++i) {
            const auto& l = group_layout(active[i]);
            items[i] = {d,       q[i].cols,   l.total, t + d * b.col0[active[i]], d, p2 + poff[i],
                        l.total, o + ooff[i], d};
        }
        b.stats.launches += kd::gemm_grouped(ctx, kd::mat_op::n, kd::mat_op::n, 1.0f, 0.0f, items.data(),
                                             items.size(), b.scratch);
        std::vector<float> host(static_cast<std::size_t>(ototal));
        if (ototal > 0) kd::download(ctx, o, host.data(), host.size() * F);
        b.stats.transfers += 6; // q, c, three pointer tables, the result
        ++b.stats.calls;
        std::vector<matrix> out(active.size());
        for (std::size_t i = 0; i < active.size(); ++i) {
            out[i] = matrix(d, q[i].cols);
            std::copy_n(host.begin() + ooff[i], out[i].data.size(), out[i].data.begin());
        }
        return out;
    });
}

std::vector<std::vector<matrix>> CudaLinalgOps::block_grams_groups(ops_side s,
                                                                   std::span<const std::size_t> active) {
    check_active(active, active.size(), "block_grams_groups");
    if (active.empty()) return {};
    auto& b = *mb;
    const auto d = s == ops_side::u ? group_layout(active[0]).d_out : group_layout(active[0]).d_in;
    return guarded([&] {
        auto& ctx = *working_set_view().ctx;
        const float* t = s == ops_side::u ? b.gu.f32() : b.gv.f32();
        std::vector<kd::gemm_item> items;
        std::vector<std::vector<std::int64_t>> goff(active.size());
        std::int64_t total = 0;
        for (std::size_t i = 0; i < active.size(); ++i) {
            const auto& l = group_layout(active[i]);
            goff[i].resize(l.size());
            for (std::size_t k = 0; k < l.size(); ++k) {
                goff[i][k] = total;
                total += l.ranks[k] * l.ranks[k];
            }
        }
        float* g = batched_access::grow<float>(*this, b.out, total);
        for (std::size_t i = 0; i < active.size(); ++i) {
            const auto& l = group_layout(active[i]);
            for (std::size_t k = 0; k < l.size(); ++k) {
                const float* tk = t + d * (b.col0[active[i]] + l.offsets[k]);
                items.push_back({l.ranks[k], l.ranks[k], d, tk, d, tk, d, g + goff[i][k], l.ranks[k]});
            }
        }
        b.stats.launches += kd::gemm_grouped(ctx, kd::mat_op::t, kd::mat_op::n, 1.0f, 0.0f, items.data(),
                                             items.size(), b.scratch);
        std::vector<float> host(static_cast<std::size_t>(total));
        if (total > 0) kd::download(ctx, g, host.data(), host.size() * F);
        b.stats.transfers += 2;
        ++b.stats.calls;
        std::vector<std::vector<matrix>> out(active.size());
        for (std::size_t i = 0; i < active.size(); ++i) {
            const auto& l = group_layout(active[i]);
            out[i].resize(l.size());
            for (std::size_t k = 0; k < l.size(); ++k) {
                out[i][k] = matrix(l.ranks[k], l.ranks[k]);
                std::copy_n(host.begin() + goff[i][k], out[i][k].data.size(), out[i][k].data.begin());
            }
        }
        return out;
    });
}

// X_g = [T_k L_k] in fp32 (one grouped GEMM over all members of all groups), widened; G_g = X_g^T X_g in
// fp64 into an [M, M] slot per group (M the widest X), padded with -1 on the unused diagonal so the
// padding's eigenpairs sort below the PSD Gram's; one batched syev; the top k_g columns in descending
// order; Y_g = X_g E_g in fp64 (one grouped GEMM), narrowed. The same steps as the single
// top_small_gram, so a group's result equals it up to rounding.
std::vector<matrix> CudaLinalgOps::top_small_gram_groups(ops_side s, std::span<const std::size_t> active,
                                                         std::span<const std::vector<matrix>> factors,
                                                         std::span<const std::int64_t> k) {
    check_active(active, factors.size(), "top_small_gram_groups");
    check_active(active, k.size(), "top_small_gram_groups");
    if (active.empty()) return {};
    auto& b = *mb;
    const auto d = s == ops_side::u ? group_layout(active[0]).d_out : group_layout(active[0]).d_in;
    const auto n = active.size();
    std::vector<std::int64_t> width(n, 0);
    for (std::size_t i = 0; i < n; ++i) {
        const auto& l = group_layout(active[i]);
        check_shape(factors[i].size() == l.size(), "ops.top_small_gram_groups",
                    "one factor per member expected");
        for (std::size_t m = 0; m < factors[i].size(); ++m) {
            check_shape(factors[i][m].cols == 0 || factors[i][m].rows == l.ranks[m],
                        "ops.top_small_gram_groups", "factor rows");
            width[i] += factors[i][m].cols;
        }
        check_shape(k[i] >= 0 && k[i] <= width[i], "ops.top_small_gram_groups", "k exceeds the width of X");
    }
    std::vector<matrix> out(n);
    std::vector<std::size_t> solve; // positions with k > 0
    for (std::size_t i = 0; i < n; ++i) {
        if (k[i] == 0)
            out[i] = matrix(d, 0);
        else
            solve.push_back(i);
    }
    if (solve.empty()) return out;
    return guarded([&] {
        auto& ctx = *working_set_view().ctx;
        const float* t = s == ops_side::u ? b.gu.f32() : b.gv.f32();
        const auto ns = static_cast<std::int64_t>(solve.size());
        std::int64_t mmax = 0, kmax = 0, xtotal = 0, etotal = 0, ytotal = 0;
        std::vector<std::int64_t> xoff(solve.size()), eoff(solve.size()), yoff(solve.size());
        std::vector<float> packed_l;
        std::vector<std::vector<std::int64_t>> loff(solve.size());
        for (std::size_t j = 0; j < solve.size(); ++j) {
            const auto i = solve[j];
            mmax = std::max(mmax, width[i]);
            kmax = std::max(kmax, k[i]);
            xoff[j] = xtotal;
            xtotal += d * width[i];
            eoff[j] = etotal;
            etotal += width[i] * k[i];
            yoff[j] = ytotal;
            ytotal += d * k[i];
            loff[j].resize(factors[i].size());
            for (std::size_t m = 0; m < factors[i].size(); ++m) {
                loff[j][m] = static_cast<std::int64_t>(packed_l.size());
                packed_l.insert(packed_l.end(), factors[i][m].data.begin(), factors[i][m].data.end());
            }
        }
        // Meta (device int64): used sizes, k, E offsets.
        std::vector<std::int64_t> meta(static_cast<std::size_t>(3 * ns));
        for (std::size_t j = 0; j < solve.size(); ++j) {
            meta[j] = width[solve[j]];
            meta[solve.size() + j] = k[solve[j]];
            meta[2 * solve.size() + j] = eoff[j];
        }
        auto* dmeta = batched_access::grow<std::int64_t>(*this, b.meta, 3 * ns);
        kd::upload(ctx, meta.data(), dmeta, meta.size() * sizeof(std::int64_t));
        float* dl = batched_access::grow<float>(*this, b.blocks, static_cast<std::int64_t>(packed_l.size()));
        if (!packed_l.empty()) kd::upload(ctx, packed_l.data(), dl, packed_l.size() * F);
        float* x = batched_access::grow<float>(*this, b.x, xtotal);
        std::vector<kd::gemm_item> build;
        for (std::size_t j = 0; j < solve.size(); ++j) {
            const auto i = solve[j];
            const auto& l = group_layout(active[i]);
            std::int64_t col = 0;
            for (std::size_t m = 0; m < factors[i].size(); ++m) {
                const auto w = factors[i][m].cols;
                if (w == 0) continue;
                build.push_back({d, w, l.ranks[m], t + d * (b.col0[active[i]] + l.offsets[m]), d,
                                 dl + loff[j][m], l.ranks[m], x + xoff[j] + d * col, d});
                col += w;
            }
        }
        b.stats.launches += kd::gemm_grouped(ctx, kd::mat_op::n, kd::mat_op::n, 1.0f, 0.0f, build.data(),
                                             build.size(), b.scratch);
        double* xd = batched_access::grow<double>(*this, b.xd, xtotal);
        kd::widen_to_f64(ctx, x, xd, xtotal);
        double* g = batched_access::grow<double>(*this, b.gram, mmax * mmax * ns);
        kd::fill_zero(ctx, g, static_cast<std::size_t>(mmax * mmax * ns) * sizeof(double));
        std::vector<kd::gemm_item_f64> grams(solve.size());
        for (std::size_t j = 0; j < solve.size(); ++j) {
            const auto m = width[solve[j]];
            grams[j] = {
                m,   m, d, xd + xoff[j], d, xd + xoff[j], d, g + mmax * mmax * static_cast<std::int64_t>(j),
                mmax};
        }
        b.stats.launches += 2;
        b.stats.launches += kd::gemm_grouped_f64(ctx, kd::mat_op::t, kd::mat_op::n, 1.0, 0.0, grams.data(),
                                                 grams.size(), b.scratch);
        b.stats.launches += kd::pad_identity_f64(ctx, g, mmax, dmeta, ns, -1.0);
        double* w = batched_access::grow<double>(*this, b.evals, mmax * ns);
        b.stats.launches += kd::syev_batched_f64(ctx, mmax, g, w, ns, b.work);
        double* e = batched_access::grow<double>(*this, b.evec, etotal);
        b.stats.launches +=
            kd::take_top_columns_f64(ctx, g, mmax, ns, dmeta, dmeta + ns, dmeta + 2 * ns, mmax, kmax, e);
        double* yd = batched_access::grow<double>(*this, b.yd, ytotal);
        std::vector<kd::gemm_item_f64> ys(solve.size());
        for (std::size_t j = 0; j < solve.size(); ++j) {
            const auto i = solve[j];
            ys[j] = {d, k[i], width[i], xd + xoff[j], d, e + eoff[j], width[i], yd + yoff[j], d};
        }
        b.stats.launches += kd::gemm_grouped_f64(ctx, kd::mat_op::n, kd::mat_op::n, 1.0, 0.0, ys.data(),
                                                 ys.size(), b.scratch);
        float* y = batched_access::grow<float>(*this, b.out, ytotal);
        kd::narrow_to_f32(ctx, yd, y, ytotal);
        ++b.stats.launches;
        std::vector<float> host(static_cast<std::size_t>(ytotal));
        kd::download(ctx, y, host.data(), host.size() * F);
        b.stats.transfers += 8; // meta, factors, three pointer tables, syev info, the result
        ++b.stats.calls;
        for (std::size_t j = 0; j < solve.size(); ++j) {
            const auto i = solve[j];
            out[i] = matrix(d, k[i]);
            std::copy_n(host.begin() + yoff[j], out[i].data.size(), out[i].data.begin());
        }
        return out;
    });
}

std::vector<std::pair<matrix, matrix>> CudaLinalgOps::qr_many(std::vector<matrix> a) {
    for (const auto& x : a)
        check_shape(x.rows >= x.cols, "ops.qr", "needs rows >= cols");
    if (a.empty()) return {};
    if (!mb) mb.reset(new batched_state);
    auto& b = *mb;
    return guarded([&] {
        auto& ctx = *working_set_view().ctx;
        std::vector<std::int64_t> aoff, roff(a.size(), 0);
        const auto packed = pack(a, aoff);
        std::int64_t rtotal = 0;
        for (std::size_t i = 0; i < a.size(); ++i) {
            roff[i] = rtotal;
            rtotal += a[i].cols * a[i].cols;
        }
        float* da = batched_access::grow<float>(*this, b.in, static_cast<std::int64_t>(packed.size()));
        float* dr = batched_access::grow<float>(*this, b.out, rtotal);
        if (!packed.empty()) kd::upload(ctx, packed.data(), da, packed.size() * F);
        std::vector<kd::qr_item> items(a.size());
        for (std::size_t i = 0; i < a.size(); ++i)
            items[i] = {a[i].rows, a[i].cols, da + aoff[i], std::max<std::int64_t>(a[i].rows, 1),
                        dr + roff[i]};
        // The double working copies may be large (8 m n bytes a matrix): reserved through the ops' budget
        // handling (evicting cached modules) before the kernel's own reserve, which then keeps it.
        batched_access::grow<char>(
            *this, b.work,
            static_cast<std::int64_t>(kd::qr_thin_many_work_bytes(items.data(), items.size())));
        b.stats.launches += kd::qr_thin_many(ctx, items.data(), items.size(), b.work);
        std::vector<float> q(packed.size()), r(static_cast<std::size_t>(rtotal));
        if (!q.empty()) kd::download(ctx, da, q.data(), q.size() * F);
        if (!r.empty()) kd::download(ctx, dr, r.data(), r.size() * F);
        b.stats.transfers += 5; // the matrices, the item table, the status flags, Q, R
        ++b.stats.calls;
        std::vector<std::pair<matrix, matrix>> out(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            out[i].first = matrix(a[i].rows, a[i].cols);
            std::copy_n(q.begin() + aoff[i], out[i].first.data.size(), out[i].first.data.begin());
            out[i].second = matrix(a[i].cols, a[i].cols);
            std::copy_n(r.begin() + roff[i], out[i].second.data.size(), out[i].second.data.begin());
        }
        return out;
    });
}

} // namespace lorafleet::compress
