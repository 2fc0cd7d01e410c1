// The 2-D cluster map (see cluster_map.hpp).
#include "ui/clusters/cluster_map.hpp"

#include "engine/compress/dense.hpp"
#include "engine/core/random.hpp"
#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace lorafleet::ui {

ClusterMap pca_2d(const std::vector<double>& features, std::size_t n, std::size_t dim) {
    if (features.size() != n * dim)
        throw shape_mismatch("cluster map", "features hold " + std::to_string(features.size()) +
                                                " values, not " + std::to_string(n) + " x " +
                                                std::to_string(dim));
    ClusterMap map;
    map.x.assign(n, 0.0);
    map.y.assign(n, 0.0);
    map.feature_dim = dim;
    if (n < 2 || dim == 0) return map;

    // Centred data, column-major [n, dim] for the engine's dense wrappers.
    compress::dmatrix xc{std::int64_t(n), std::int64_t(dim)};
    for (std::size_t j = 0; j < dim; ++j) {
        double mean = 0;
        for (std::size_t i = 0; i < n; ++i)
            mean += features[i * dim + j];
        mean /= double(n);
        for (std::size_t i = 0; i < n; ++i)
            xc(std::int64_t(i), std::int64_t(j)) = features[i * dim + j] - mean;
    }
    const double total = compress::frobenius2(xc.view());
    if (!(total > 0)) return map;

    // Eigenvectors of the scatter matrix XcᵀXc [dim, dim] (dim is bounded by the feature budget), or of
    // the Gram matrix XcXcᵀ [n, n] when that is smaller; both give the same principal coordinates.
    const std::int64_t axes = std::min<std::int64_t>(2, std::int64_t(std::min(n, dim)));
    std::vector<std::vector<double>> coords(2, std::vector<double>(n, 0.0));
    std::vector<double> values(2, 0.0);
    if (dim <= n) {
        auto scatter = compress::gemm(compress::op::t, xc.view(), compress::op::n, xc.view());
        auto eig = compress::top_eigenvectors(std::move(scatter), axes);
        for (std::int64_t a = 0; a < axes; ++a) {
            // Sign: the largest-magnitude loading is positive.
            std::int64_t best = 0;
            for (std::int64_t j = 1; j < std::int64_t(dim); ++j)
                if (std::abs(eig.vectors(j, a)) > std::abs(eig.vectors(best, a)) + 1e-12) best = j;
            const double sign = eig.vectors(best, a) < 0 ? -1.0 : 1.0;
            for (std::size_t i = 0; i < n; ++i) {
                double s = 0;
                for (std::size_t j = 0; j < dim; ++j)
                    s += xc(std::int64_t(i), std::int64_t(j)) * eig.vectors(std::int64_t(j), a);
                coords[std::size_t(a)][i] = sign * s;
            }
            values[std::size_t(a)] = std::max(0.0, eig.values[std::size_t(a)]);
        }
    } else {
        auto gram = compress::gemm(compress::op::n, xc.view(), compress::op::t, xc.view());
        auto eig = compress::top_eigenvectors(std::move(gram), axes);
        for (std::int64_t a = 0; a < axes; ++a) {
            const double lambda = std::max(0.0, eig.values[std::size_t(a)]);
            values[std::size_t(a)] = lambda;
            // Principal coordinates are sqrt(λ) u; the loading direction is Xcᵀu / sqrt(λ): fix the sign
            // by its largest-magnitude component, as in the other branch.
            double bestAbs = -1, bestVal = 0;
            for (std::size_t j = 0; j < dim; ++j) {
                double s = 0;
                for (std::size_t i = 0; i < n; ++i)
                    s += xc(std::int64_t(i), std::int64_t(j)) * eig.vectors(std::int64_t(i), a);
                if (std::abs(s) > bestAbs + 1e-12) {
                    bestAbs = std::abs(s);
                    bestVal = s;
                }
            }
            const double sign = bestVal < 0 ? -1.0 : 1.0;
            const double scale = std::sqrt(lambda);
            for (std::size_t i = 0; i < n; ++i)
                coords[std::size_t(a)][i] = sign * scale * eig.vectors(std::int64_t(i), a);
        }
    }
    map.x = std::move(coords[0]);
    map.y = std::move(coords[1]);
    map.explained[0] = values[0] / total;
    map.explained[1] = values[1] / total;
    return map;
}

namespace {

// Gᵀ M for a Gaussian sketch G [rows, p] (seeded per module and side) and M row-major [rows, r] given by
// `at(row, a)`: returns [p, r] row-major.
template <class At> std::vector<double> sketch(std::size_t rows, std::size_t r, std::uint64_t seed, At at) {
    constexpr std::size_t p = kSketchWidth;
    std::vector<double> out(p * r, 0.0);
    random_stream g(seed);
    std::vector<double> gRow(p);
    for (std::size_t row = 0; row < rows; ++row) {
        for (auto& v : gRow)
            v = g.normal();
        for (std::size_t a = 0; a < r; ++a) {
            const double m = at(row, a);
            if (m == 0) continue;
            for (std::size_t q = 0; q < p; ++q)
                out[q * r + a] += gRow[q] * m;
        }
    }
    return out;
}

// Upper triangle of X Xᵀ for X [p, r] row-major, off-diagonals times sqrt(2); appends p (p + 1) / 2 values.
void gramUpper(const std::vector<double>& x, std::size_t r, double* out) {
    constexpr std::size_t p = kSketchWidth;
    for (std::size_t a = 0; a < p; ++a)
        for (std::size_t b = a; b < p; ++b) {
            double s = 0;
            for (std::size_t k = 0; k < r; ++k)
                s += x[a * r + k] * x[b * r + k];
            *out++ = a == b ? s : std::sqrt(2.0) * s;
        }
}

} // namespace

std::vector<double> adapter_features(const bank::compressed_bank& bank, std::size_t feature_budget,
                                     std::size_t* dim, std::size_t* modules_used) {
    constexpr std::size_t p = kSketchWidth;
    constexpr std::size_t tri = p * (p + 1) / 2;
    constexpr std::size_t block = 2 * tri;
    const std::size_t n = bank.adapters.size();
    const std::size_t modules = bank.modules.size();
    const bool full = bank.kind == compress::jd_method::full;
    const std::size_t r = std::size_t(std::max(bank.rank, 0));
    const std::size_t coreSize = std::size_t(bank.core_size());
    const int k = std::max(bank.clusters, 1);
    if (bank.cores.size() != modules || bank.bases.size() != modules)
        throw validation_error("cluster map", "the bank's cores or bases do not cover its " +
                                                  std::to_string(modules) + " modules");
    for (std::size_t m = 0; m < modules; ++m) {
        if (bank.cores[m].size() != n * coreSize)
            throw validation_error("cluster map", "module " + bank.modules[m].path + " holds " +
                                                      std::to_string(bank.cores[m].size()) +
                                                      " core values, not " + std::to_string(n * coreSize));
        if (bank.bases[m].size() != std::size_t(k))
            throw validation_error("cluster map", "module " + bank.modules[m].path + " has " +
                                                      std::to_string(bank.bases[m].size()) + " bases for " +
                                                      std::to_string(k) + " clusters");
    }
    const std::size_t used =
        (modules == 0 || r == 0) ? 0 : std::min(modules, std::max<std::size_t>(1, feature_budget / block));
    *dim = used * block;
    *modules_used = used;
    std::vector<double> features(n * *dim, 0.0);

    std::vector<double> x(p * r), y(p * r), s(r * r);
    for (std::size_t j = 0; j < used; ++j) {
        const std::size_t m = j * modules / used; // evenly spaced, the first module always in
        const auto& mod = bank.modules[m];
        const std::size_t dOut = std::size_t(mod.d_out), dIn = std::size_t(mod.d_in);
        // Per cluster: Gᵀ U_c and Hᵀ V_c [p, r] (empty when the cluster has no basis here).
        const auto clusterCount = static_cast<std::size_t>(k);
        std::vector<std::vector<double>> gu(clusterCount), hv(clusterCount);
        for (int c = 0; c < k; ++c) {
            const auto& basis = bank.bases[m][std::size_t(c)];
            if (basis.empty()) continue;
            if (basis.u.size() != dOut * r || basis.vt.size() != r * dIn)
                throw validation_error("cluster map",
                                       "module " + mod.path + " has a basis of the wrong shape");
            gu[std::size_t(c)] = sketch(dOut, r, 0xc0105eedull + 2 * m, [&](std::size_t row, std::size_t a) {
                return double(basis.u[row * r + a]);
            });
            hv[std::size_t(c)] =
                sketch(dIn, r, 0xc0105eedull + 2 * m + 1,
                       [&](std::size_t col, std::size_t a) { return double(basis.vt[a * dIn + col]); });
        }
        for (std::size_t i = 0; i < n; ++i) {
            const auto& adapter = bank.adapters[i];
            const int c = adapter.cluster;
            if (c < 0 || c >= k || gu[std::size_t(c)].empty() || !adapter.has_module(m)) continue;
            const float* core = bank.core(m, i);
            std::fill(s.begin(), s.end(), 0.0);
            for (std::size_t a = 0; a < r; ++a)
                if (full)
                    for (std::size_t b = 0; b < r; ++b)
                        s[a * r + b] = core[a * r + b];
                else
                    s[a * r + a] = core[a];
            // x = (GᵀU) S, y = (HᵀV) Sᵀ: then K_col = x xᵀ, K_row = y yᵀ.
            const auto& g = gu[std::size_t(c)];
            const auto& h = hv[std::size_t(c)];
            for (std::size_t q = 0; q < p; ++q)
                for (std::size_t b = 0; b < r; ++b) {
                    double sx = 0, sy = 0;
                    for (std::size_t a = 0; a < r; ++a) {
                        sx += g[q * r + a] * s[a * r + b];
                        sy += h[q * r + a] * s[b * r + a];
                    }
                    x[q * r + b] = sx;
                    y[q * r + b] = sy;
                }
            double* out = features.data() + i * *dim + j * block;
            gramUpper(x, r, out);
            gramUpper(y, r, out + tri);
            double norm2 = 0;
            for (std::size_t t = 0; t < block; ++t)
                norm2 += out[t] * out[t];
            if (!std::isfinite(norm2) || norm2 <= 0) {
                std::fill(out, out + block, 0.0);
                continue;
            }
            const double inv = 1.0 / std::sqrt(norm2);
            for (std::size_t t = 0; t < block; ++t)
                out[t] *= inv;
        }
    }
    return features;
}

ClusterMap compute_cluster_map(const bank::compressed_bank& bank, std::size_t feature_budget) {
    std::size_t dim = 0, used = 0;
    const auto features = adapter_features(bank, feature_budget, &dim, &used);
    ClusterMap map = pca_2d(features, bank.adapters.size(), dim);
    map.modules_used = used;
    return map;
}

} // namespace lorafleet::ui
