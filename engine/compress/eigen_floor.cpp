// eigen_floor.hpp: the rank floor and the fixed completion of the exact eigen paths.
#include "engine/compress/eigen_floor.hpp"

#include "engine/core/error.hpp"
#include "engine/core/random.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace lorafleet::compress {

std::int64_t eigen_rank(std::span<const double> descending) {
    if (descending.empty() || !(descending[0] > 0.0)) return 0;
    const double floor = eigen_floor_ratio * descending[0];
    std::int64_t k = 0;
    while (static_cast<std::size_t>(k) < descending.size() && descending[static_cast<std::size_t>(k)] > floor)
        ++k;
    return k;
}

void complete_null_columns(dmatrix& v, std::int64_t keep, double scale) {
    const auto d = v.rows;
    check_shape(keep >= 0 && keep <= v.cols && v.cols <= d, "complete_null_columns",
                "keep " + std::to_string(keep) + " of " + std::to_string(v.cols) + " columns, dimension " +
                    std::to_string(d));
    if (keep == v.cols) return;
    // Orthonormal copy of the kept columns, then the new ones, in double (classical Gram-Schmidt, twice).
    dmatrix q(d, v.cols);
    auto orthogonalize = [&](std::int64_t j) -> bool {
        double* c = q.data.data() + j * d;
        for (int pass = 0; pass < 2; ++pass)
            for (std::int64_t p = 0; p < j; ++p) {
                const double* qp = q.data.data() + p * d;
                double dot = 0.0;
                for (std::int64_t i = 0; i < d; ++i)
                    dot += qp[i] * c[i];
                for (std::int64_t i = 0; i < d; ++i)
                    c[i] -= dot * qp[i];
            }
        double n = 0.0;
        for (std::int64_t i = 0; i < d; ++i)
            n += c[i] * c[i];
        n = std::sqrt(n);
        if (!(n > 0.0)) return false;
        for (std::int64_t i = 0; i < d; ++i)
            c[i] /= n;
        return true;
    };
    for (std::int64_t j = 0; j < keep; ++j) {
        std::copy(v.data.begin() + j * d, v.data.begin() + (j + 1) * d, q.data.begin() + j * d);
        if (!orthogonalize(j)) // a kept column in the span of the ones before: nothing to be orthogonal to
            std::fill(q.data.begin() + j * d, q.data.begin() + (j + 1) * d, 0.0);
    }
    for (std::int64_t j = keep; j < v.cols; ++j) {
        auto g = random_stream::derive(0x6e756c6cull,
                                       {static_cast<std::uint64_t>(d), static_cast<std::uint64_t>(j)});
        std::uint64_t attempt = 0;
        do {
            for (std::int64_t i = 0; i < d; ++i)
                q(i, j) = g.normal();
            ++attempt;
        } while (!orthogonalize(j) && attempt < 8);
        for (std::int64_t i = 0; i < d; ++i)
            v(i, j) = q(i, j) * scale;
    }
}

} // namespace lorafleet::compress
