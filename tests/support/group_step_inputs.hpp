// Random operands for one call of each grouped LinalgOps operation (project / accumulate / apply_blocks /
// top_small_gram _groups) on some active groups of a selected grouped working set, shaped by each group's
// layout: a [d, x_cols] basis to project, a [total, 3] block to accumulate, per-member r x r blocks
// (every third member's empty) and a [d, 4] input for apply_blocks, per-member [r_m, 2] factors (every
// fourth member's with no columns) and k = min(3, their width) for top_small_gram. The CPU test of the
// grouped host ops and the gpu test of the CUDA ones draw the same kinds of operands from here. Seeded
// through `g`: the same stream gives the same operands.
#pragma once

#include "engine/compress/linalg_ops.hpp"
#include "engine/core/random.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace lorafleet::test {

struct group_step_inputs {
    std::vector<compress::matrix> x, z, q;
    std::vector<std::vector<compress::matrix>> c, f;
    std::vector<std::int64_t> k;
};

group_step_inputs random_group_step_inputs(const compress::LinalgOps& ops,
                                           std::span<const std::size_t> active, std::int64_t d,
                                           std::int64_t x_cols, random_stream& g);

} // namespace lorafleet::test
