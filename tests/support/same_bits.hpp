// Bit-for-bit equality of compression results (shape and every value's bytes, NaN included), for the
// tests that promise identical results across thread counts, groupings, caches and backends.
#pragma once

#include "engine/compress/dense.hpp"

#include <cstring>
#include <vector>

namespace lorafleet::test {

inline bool same_bits(const compress::matrix& a, const compress::matrix& b) {
    return a.rows == b.rows && a.cols == b.cols &&
           std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0;
}
inline bool same_bits(const compress::dmatrix& a, const compress::dmatrix& b) {
    return a.rows == b.rows && a.cols == b.cols &&
           std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(double)) == 0;
}
inline bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

} // namespace lorafleet::test
