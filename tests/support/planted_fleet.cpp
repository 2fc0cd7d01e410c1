// Planted fleets and dense reference helpers for the compression tests (see planted_fleet.hpp).
#include "tests/support/planted_fleet.hpp"

#include <algorithm>
#include <cmath>
#include <map>

namespace lorafleet::test {

using compress::matrix;
using compress::owned_factors;

namespace {

// Row-major [rows, cols] copy of a column-major matrix product, written into PEFT layouts.
std::vector<float> to_row_major(const matrix& m) {
    std::vector<float> out(m.data.size());
    for (std::int64_t i = 0; i < m.rows; ++i)
        for (std::int64_t j = 0; j < m.cols; ++j)
            out[static_cast<std::size_t>(i * m.cols + j)] = m(i, j);
    return out;
}

double frob(const matrix& m) {
    double s = 0.0;
    for (const float x : m.data)
        s += static_cast<double>(x) * x;
    return std::sqrt(s);
}

} // namespace

planted_fleet make_planted_fleet(const planted_fleet_options& o) {
    const auto n = static_cast<std::size_t>(o.groups * o.adapters_per_group);
    const auto nm = o.modules.size();
    planted_fleet fleet;
    fleet.source = std::make_unique<compress::InMemoryModuleSource>(n);
    fleet.labels.resize(n);
    for (std::size_t i = 0; i < n; ++i)
        fleet.labels[i] = o.interleave ? static_cast<int>(i % static_cast<std::size_t>(o.groups))
                                       : static_cast<int>(i / static_cast<std::size_t>(o.adapters_per_group));
    auto g = random_stream::derive(o.seed, {0x91a27});
    fleet.has.assign(n, std::vector<bool>(nm, true));
    if (o.missing_probability > 0.0)
        for (std::size_t i = 0; i < n; ++i) {
            for (std::size_t m = 0; m < nm; ++m)
                fleet.has[i][m] = g.uniform() >= o.missing_probability;
            if (std::none_of(fleet.has[i].begin(), fleet.has[i].end(), [](bool b) { return b; }))
                fleet.has[i][g.below(nm)] = true;
        }
    const auto R = o.subspace_rank;
    for (std::size_t m = 0; m < nm; ++m) {
        const auto& mod = o.modules[m];
        fleet.source->add_module(mod.name, mod.d_out, mod.d_in);
        std::vector<matrix> ug, vg;
        for (int k = 0; k < o.groups; ++k) {
            ug.push_back(compress::random_orthonormal(mod.d_out, R, g));
            vg.push_back(compress::random_orthonormal(mod.d_in, R, g));
        }
        fleet.group_u.push_back(ug);
        fleet.group_v.push_back(vg);
        for (std::size_t i = 0; i < n; ++i) {
            if (!fleet.has[i][m]) continue;
            const auto grp = static_cast<std::size_t>(fleet.labels[i]);
            const std::int64_t ri =
                o.diagonal_cores
                    ? R
                    : (o.adapter_ranks.empty() ? R : o.adapter_ranks[i % o.adapter_ranks.size()]);
            const double s = o.scales.empty() ? 1.0 : o.scales[i % o.scales.size()];
            matrix c = compress::gaussian_matrix(R, ri, g); // [R, r_i]
            matrix d = compress::gaussian_matrix(ri, R, g); // [r_i, R]
            if (o.diagonal_cores) {
                c = matrix::identity(R);
                d = matrix(R, R);
                for (std::int64_t j = 0; j < R; ++j)
                    d(j, j) = static_cast<float>(0.5 + g.uniform());
            }
            matrix b = compress::gemm(compress::op::n, ug[grp], compress::op::n, c); // [d_out, r_i]
            matrix a = compress::gemm(compress::op::n, d, compress::op::t, vg[grp]); // [r_i, d_in]
            for (auto& x : b.data)
                x = static_cast<float>(x * s);
            if (o.noise > 0.0) {
                // Two extra ranks of unstructured noise, scaled relative to the adapter's own size.
                const double size = frob(b) * frob(a) / std::sqrt(static_cast<double>(ri));
                matrix bn = compress::gaussian_matrix(mod.d_out, 2, g),
                       an = compress::gaussian_matrix(2, mod.d_in, g);
                const double f = std::sqrt(o.noise * size / (frob(bn) * frob(an) / std::sqrt(2.0)));
                matrix b2(mod.d_out, ri + 2), a2(ri + 2, mod.d_in);
                for (std::int64_t col = 0; col < ri + 2; ++col)
                    for (std::int64_t row = 0; row < mod.d_out; ++row)
                        b2(row, col) = col < ri ? b(row, col) : static_cast<float>(bn(row, col - ri) * f);
                for (std::int64_t col = 0; col < mod.d_in; ++col)
                    for (std::int64_t row = 0; row < ri + 2; ++row)
                        a2(row, col) = row < ri ? a(row, col) : static_cast<float>(an(row - ri, col) * f);
                b = std::move(b2);
                a = std::move(a2);
            }
            owned_factors f;
            f.adapter = i;
            f.rank = a.rows;
            f.a = to_row_major(a);
            f.b = to_row_major(b);
            fleet.source->set_factors(m, std::move(f));
        }
    }
    return fleet;
}

owned_factors planted_adapter(const planted_fleet& fleet, std::size_t m, int group, std::size_t adapter,
                              random_stream& g) {
    const matrix& u = fleet.group_u.at(m).at(static_cast<std::size_t>(group));
    const matrix& v = fleet.group_v.at(m).at(static_cast<std::size_t>(group));
    const auto R = u.cols;
    const matrix b = compress::gemm(compress::op::n, u, compress::op::n, compress::gaussian_matrix(R, R, g));
    const matrix a = compress::gemm(compress::op::n, compress::gaussian_matrix(R, R, g), compress::op::t, v);
    owned_factors f;
    f.adapter = adapter;
    f.rank = R;
    f.a = to_row_major(a);
    f.b = to_row_major(b);
    return f;
}

owned_factors random_factors(std::size_t adapter, std::int64_t rank, std::int64_t d_out, std::int64_t d_in,
                             random_stream& g, double scale) {
    owned_factors f;
    f.adapter = adapter;
    f.rank = rank;
    f.a.resize(static_cast<std::size_t>(rank * d_in));
    f.b.resize(static_cast<std::size_t>(d_out * rank));
    for (auto& x : f.a)
        x = static_cast<float>(g.normal());
    for (auto& x : f.b)
        x = static_cast<float>(g.normal() * scale);
    return f;
}

std::vector<double> dense_delta(const compress::module_batch& batch, std::size_t pos) {
    const auto& f = batch.adapters.at(pos);
    const auto d_out = batch.d_out, d_in = batch.d_in, r = f.rank;
    std::vector<double> w(static_cast<std::size_t>(d_out * d_in), 0.0);
    for (std::int64_t i = 0; i < d_out; ++i)
        for (std::int64_t k = 0; k < r; ++k) {
            const double bik = f.b[static_cast<std::size_t>(i * r + k)];
            for (std::int64_t j = 0; j < d_in; ++j)
                w[static_cast<std::size_t>(i * d_in + j)] +=
                    bik * f.a[static_cast<std::size_t>(k * d_in + j)];
        }
    return w;
}

double dense_error(const compress::module_batch& batch, std::size_t pos, const matrix& u, const matrix& s,
                   const matrix& v) {
    const auto d_out = batch.d_out, d_in = batch.d_in, r = u.cols;
    const auto w = dense_delta(batch, pos);
    // U S (double) [d_out, r]
    std::vector<double> us(static_cast<std::size_t>(d_out * r), 0.0);
    for (std::int64_t i = 0; i < d_out; ++i)
        for (std::int64_t b = 0; b < r; ++b) {
            double acc = 0.0;
            if (s.cols == 1)
                acc = static_cast<double>(u(i, b)) * s(b, 0);
            else
                for (std::int64_t a = 0; a < r; ++a)
                    acc += static_cast<double>(u(i, a)) * s(a, b);
            us[static_cast<std::size_t>(i * r + b)] = acc;
        }
    double e = 0.0;
    for (std::int64_t i = 0; i < d_out; ++i)
        for (std::int64_t j = 0; j < d_in; ++j) {
            double rec = 0.0;
            for (std::int64_t b = 0; b < r; ++b)
                rec += us[static_cast<std::size_t>(i * r + b)] * static_cast<double>(v(j, b));
            const double diff = w[static_cast<std::size_t>(i * d_in + j)] - rec;
            e += diff * diff;
        }
    return e;
}

bool same_partition(const std::vector<int>& a, const std::vector<int>& b) {
    if (a.size() != b.size()) return false;
    std::map<int, int> ab, ba;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const auto [it1, new1] = ab.emplace(a[i], b[i]);
        const auto [it2, new2] = ba.emplace(b[i], a[i]);
        if ((!new1 && it1->second != b[i]) || (!new2 && it2->second != a[i])) return false;
    }
    return true;
}

planted_fleet_options three_shape_fleet_options(std::uint64_t seed) {
    planted_fleet_options po;
    po.modules = {{"layers.0.q_proj", 96, 80},
                  {"layers.0.v_proj", 48, 80},
                  {"layers.1.q_proj", 96, 80},
                  {"layers.1.v_proj", 48, 80},
                  {"layers.2.q_proj", 64, 80}};
    po.adapter_ranks = {4, 6, 5};
    po.noise = 0.05;
    po.seed = seed;
    return po;
}

} // namespace lorafleet::test
