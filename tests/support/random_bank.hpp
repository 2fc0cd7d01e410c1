// A small random compressed bank with every corner the format has: 3 modules (one GQA-shaped, d_out 8),
// 3 clusters, 6 adapters; adapter 5 lacks module 2 and cluster 2 has no member with module 2, so its
// basis there is empty. Deterministic for a seed.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/hf_config.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace lorafleet::test {

bank::compressed_bank make_random_bank(compress::jd_method kind, unsigned seed);

// A random bank in a model's geometry, for serving tests: `modules` (short names) on every layer,
// adapters "a0", "a1", ... with adapter i in cluster i % clusters, bases ~ N(0, basis_scale²), cores
// ~ N(0, 1), every error 0.1. Deterministic for a seed (lorafleet::random_stream).
struct model_bank_spec {
    compress::jd_method kind = compress::jd_method::full;
    std::vector<std::string> modules;
    int adapters = 3;
    int clusters = 2;
    int rank = 4;
    double basis_scale = 0.1;
    std::uint64_t seed = 5;
};
bank::compressed_bank make_model_bank(const io::model_geometry& g, const model_bank_spec& spec);

} // namespace lorafleet::test
