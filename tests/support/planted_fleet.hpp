// In-memory LoRA fleets with PLANTED structure for the compression tests: K groups; in every module,
// each group owns a random rank-R column subspace U_g and row subspace V_g, and each adapter of the
// group is B_i = s_i U_g C_i, A_i = D_i V_g^T with its own random C_i [R, r_i], D_i [r_i, R] (or
// Delta W_i = U_g diag(sigma_i) V_g^T with `diagonal_cores`). Without noise, rank R with K clusters
// reconstructs every adapter exactly and the groups are the only exact clustering. Seeded and
// deterministic. Also small dense helpers that tests use as brute-force references.
#pragma once

#include "engine/compress/module_batch.hpp"
#include "engine/compress/module_source.hpp"
#include "engine/compress/random_matrix.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lorafleet::test {

struct planted_module {
    std::string name;
    std::int64_t d_out = 0;
    std::int64_t d_in = 0;
};

struct planted_fleet_options {
    std::vector<planted_module> modules = {{"layers.0.q_proj", 48, 40},
                                           {"layers.0.v_proj", 24, 40},
                                           {"layers.1.q_proj", 48, 40},
                                           {"layers.1.v_proj", 24, 40}};
    int groups = 3;
    int adapters_per_group = 4;
    std::int64_t subspace_rank = 4;          // R
    std::vector<std::int64_t> adapter_ranks; // r_i, cycled over adapters; empty = {R}
    std::vector<double> scales;              // s_i, cycled; empty = {1}
    bool diagonal_cores = false;             // dW_i = s_i U_g diag(sigma_i) V_g^T (r_i = R)
    double noise = 0.0;               // adds noise * (random rank-2 matrix of norm ||dW_i||) as 2 more ranks
    double missing_probability = 0.0; // chance that an adapter lacks a module (never all of them)
    bool interleave = true;           // adapter i belongs to group i % K (else contiguous blocks)
    std::uint64_t seed = 1;
};

struct planted_fleet {
    std::unique_ptr<compress::InMemoryModuleSource> source;
    std::vector<int> labels;                            // [adapter] planted group
    std::vector<std::vector<bool>> has;                 // [adapter][module]
    std::vector<std::vector<compress::matrix>> group_u; // [module][group] U_g [d_out, R], orthonormal
    std::vector<std::vector<compress::matrix>> group_v; // [module][group] V_g [d_in, R], orthonormal
};

planted_fleet make_planted_fleet(const planted_fleet_options& options);

// Five modules of three shapes over three layers (q-like 96 x 80, v-like 48 x 80, a 64 x 80 third
// layer), adapter ranks 4, 6, 5, 5% noise: the fleet the driver-level CUDA-vs-CPU tests share. Callers
// set what they vary (seed, missing modules) on the result.
planted_fleet_options three_shape_fleet_options(std::uint64_t seed);

// Factors of a NEW adapter of `group` on module m (fresh random cores, rank R), for §6 tests.
compress::owned_factors planted_adapter(const planted_fleet& fleet, std::size_t m, int group,
                                        std::size_t adapter, random_stream& g);

// Random factors for one adapter (Gaussian A and B, B multiplied by `scale`).
compress::owned_factors random_factors(std::size_t adapter, std::int64_t rank, std::int64_t d_out,
                                       std::int64_t d_in, random_stream& g, double scale = 1.0);

// Dense Delta W = B A of batch position `pos`, in double, row-major [d_out, d_in].
std::vector<double> dense_delta(const compress::module_batch& batch, std::size_t pos);
// Dense ||Delta W - U S V^T||_F^2 in double (S [r, r] or the diagonal [r, 1]).
double dense_error(const compress::module_batch& batch, std::size_t pos, const compress::matrix& u,
                   const compress::matrix& s, const compress::matrix& v);

// True when the two labelings define the same partition (equal up to relabeling).
bool same_partition(const std::vector<int>& a, const std::vector<int>& b);

} // namespace lorafleet::test
