// The per-element logic of the batched linear-algebra kernels (linalg_batched.cu) as __host__ __device__
// functions, so the CPU unit tests (tests/kernels_host/test_batched_elementwise.cpp) run exactly
// the code the GPU runs. Pure functions of their arguments; no state, any thread. C++17.
#pragma once

#include "kernels/linalg_elementwise.hpp" // LORAFLEET_HD

#include <cstdint>

namespace lorafleet::kernels {

// Padding of batched eigenproblem j (pad_identity_f64): the value element (i, i) of an [n, n] matrix
// whose used block is [size, size] gets, or `keep` (the element's current value) inside the block.
LORAFLEET_HD inline double padded_diagonal(std::int64_t i, std::int64_t size, double keep, double pad) {
    return i < size ? keep : pad;
}

// Source offset (in elements, from the start of the packed batch) of element (row, c) of the top-k
// descending eigenvectors of problem j (take_top_columns_f64): column n - 1 - c of matrix j, or -1 when
// (row, c) lies outside E_j [rows, k].
LORAFLEET_HD inline std::int64_t top_column_source(std::int64_t j, std::int64_t row, std::int64_t c,
                                                   std::int64_t n, std::int64_t rows, std::int64_t k) {
    if (row >= rows || c >= k) return -1;
    return j * n * n + (n - 1 - c) * n + row;
}

// Offset of element (row, c) of E_j in the packed destination (leading dimension rows).
LORAFLEET_HD inline std::int64_t top_column_dest(std::int64_t row, std::int64_t c, std::int64_t rows,
                                                 std::int64_t offset) {
    return offset + c * rows + row;
}

// Source offset of element (row, c) of the column gather (gather_columns): column index[c] of a [d, *]
// column-major matrix.
LORAFLEET_HD inline std::int64_t gathered_column_source(std::int64_t row, std::int64_t source_column,
                                                        std::int64_t d) {
    return source_column * d + row;
}

} // namespace lorafleet::kernels
