// Random operands for the grouped LinalgOps operations (see group_step_inputs.hpp).
#include "tests/support/group_step_inputs.hpp"

#include "engine/compress/random_matrix.hpp"

#include <algorithm>

namespace lorafleet::test {

using compress::gaussian_matrix;
using compress::matrix;

group_step_inputs random_group_step_inputs(const compress::LinalgOps& ops,
                                           std::span<const std::size_t> active, std::int64_t d,
                                           std::int64_t x_cols, random_stream& g) {
    group_step_inputs in;
    for (const auto a : active) {
        const auto& l = ops.group_layout(a);
        in.x.push_back(gaussian_matrix(d, x_cols, g));
        in.z.push_back(gaussian_matrix(l.total, 3, g));
        in.q.push_back(gaussian_matrix(d, 4, g));
        std::vector<matrix> blocks, factors;
        std::int64_t width = 0;
        for (std::size_t m = 0; m < l.size(); ++m) {
            blocks.push_back(m % 3 == 1 ? matrix() : gaussian_matrix(l.ranks[m], l.ranks[m], g));
            factors.push_back(gaussian_matrix(l.ranks[m], m % 4 == 2 ? 0 : 2, g));
            width += factors.back().cols;
        }
        in.c.push_back(std::move(blocks));
        in.f.push_back(std::move(factors));
        in.k.push_back(std::min<std::int64_t>(3, width));
    }
    return in;
}

} // namespace lorafleet::test
