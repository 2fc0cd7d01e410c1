// Random matrices for the compression core, drawn from the program's one deterministic generator
// (lorafleet::random_stream, engine/core/random.hpp), so a seeded compression gives the same numbers
// on every platform and standard library.
#pragma once

#include "engine/compress/dense.hpp"
#include "engine/core/random.hpp"

#include <cstdint>

namespace lorafleet::compress {

// A [rows, cols] matrix of independent standard normal entries, filled column by column.
inline matrix gaussian_matrix(std::int64_t rows, std::int64_t cols, random_stream& g) {
    matrix m(rows, cols);
    for (auto& x : m.data)
        x = static_cast<float>(g.normal());
    return m;
}

// A random orthonormal [rows, cols] basis (rows >= cols): QR of a Gaussian matrix.
inline matrix random_orthonormal(std::int64_t rows, std::int64_t cols, random_stream& g) {
    return orthonormalize(gaussian_matrix(rows, cols, g));
}

} // namespace lorafleet::compress
