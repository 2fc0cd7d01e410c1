// Synthetic LoRA fleets with planted cluster structure: N real PEFT adapter folders (adapter_config.json +
// adapter_model.safetensors) that any PEFT loader accepts, for tests, benchmarks and demos of joint
// compression (method.md §1, §5) when no real fleet is at hand.
//
// Structure model, per module (one layer's q_proj, ...) and group g of K:
//   P_g [d_in, r], Q_g [d_out, r]: random orthonormal bases (Gaussian, modified Gram-Schmidt twice);
//   adapter i in g: A_i = C_i P_gᵀ + E_A   [r, d_in],   B_i = Q_g D_i + E_B   [d_out, r],
//   C_i ~ N(0, 1/r) r x r, so A has entries of RMS 1/sqrt(d_in) like PEFT's kaiming init of lora_A;
//   D_i ~ N(0, 1e-4 d_out / r) r x r, so B has entries of RMS 1e-2 like a trained lora_B;
//   E_A, E_B: Gaussian, scaled so that ||E|| = noise * ||clean part|| exactly (in double, before rounding).
// A `shared_a_fraction` of each group's members use the group's canonical A_g = C_g P_gᵀ exactly, with
// no noise (fleets fine-tuned from one initialisation seed share lora_A). With noise 0 the stacked B's of
// one group span exactly Q_g (rank r) and those of the fleet span rank min(K r, d_out); likewise for Aᵀ.
//
// Group assignment (seeded, balanced, prefix-stable): adapters are taken in blocks of K consecutive
// indices; block b is a seeded random permutation of the K groups, so adapter i is member b = i / K of its
// group, group sizes differ by at most one and every group is used once N >= K. A member j is shared-A
// when ceil((j + 1) f) > ceil(j f): members 0, 4, 8, ... for f = 0.25, all for f = 1, none for f = 0.
//
// Determinism: every number comes from random_stream::derive(seed, {purpose, adapter, layer, module-name
// hash, ...}) and is computed in double in a fixed order without BLAS (whose kernels, and so roundings,
// differ per CPU). Adapter i's files are therefore byte-identical for any N (with the same K), thread
// count or module order; K itself defaults from N (see default_clusters), so pass it explicitly for
// prefix stability across different N.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/io/safetensors.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace lorafleet::synth {

struct synth_options {
    std::filesystem::path out_dir;
    int adapters = 1; // N >= 1
    io::model_geometry geometry;
    std::vector<std::string> modules{"q_proj", "k_proj", "v_proj"}; // short names for linear_shape
    int rank = 16;                     // r of every adapter, 1 <= r <= min(d_in, d_out) of every module
    double alpha = 32.0;               // lora_alpha written to adapter_config.json (scale alpha / r)
    int clusters = 0;                  // K planted groups, 1..N; 0 means default_clusters(N)
    double noise = 0.05;               // relative Frobenius norm of the per-adapter noise, >= 0
    io::dtype dtype = io::dtype::BF16; // F32, F16 or BF16
    std::uint64_t seed = 0;
    double shared_a_fraction = 0.25; // in [0, 1]
    int layers = 0;                  // adapt layers 0..layers-1 only; 0 means every layer of the geometry
    bool overwrite = false;          // allow writing into a non-empty out_dir (replacing adapter-* folders)
    int threads = 0;                 // worker threads; 0 means min(4, hardware threads)
};

// The paper's setting of 25 clusters for ~1000 adapters is ~40 adapters per cluster: max(1, N / 40).
int default_clusters(int adapters);

// Folder name of adapter `index` in a fleet of `adapters`: "adapter-" + index zero-padded to
// max(4, digits of adapters - 1), so names sort in index order and adapter-0000 is the same for any N < 10^4.
std::string adapter_folder_name(int index, int adapters);

// Throws usage_error naming the offending option: N < 1, unknown or repeated module, rank outside
// 1..min(d_in, d_out), K outside 1..N, negative or non-finite noise/alpha, fraction outside [0, 1],
// dtype not F32/F16/BF16, layers outside 0..num_layers.
void validate_synth_options(const synth_options& options);

// The planted grouping, computed without writing anything (validates first).
struct synth_plan {
    int clusters = 0;           // K after defaulting
    int layers = 0;             // layers written (0..layers-1)
    std::vector<int> group;     // [N] planted group of each adapter, 0..K-1
    std::vector<int> member;    // [N] index of the adapter within its group
    std::vector<bool> shared_a; // [N] uses its group's canonical A exactly
};
synth_plan plan_synthetic_fleet(const synth_options& options);

struct synth_result {
    synth_plan plan;
    std::uint64_t bytes = 0; // total size of the files written
};

// Called on the caller's thread with (adapters written, N) as work completes (not necessarily for every
// count, always for the last); return false to cancel.
using synth_progress = std::function<bool(int done, int total)>;

// Writes the fleet into options.out_dir (created if missing) with a few threads, one adapter per task;
// memory holds the bases of the groups in flight and one adapter per thread, never the fleet. Each file
// is written atomically, lora_A/lora_B first and adapter_config.json last. Throws usage_error for bad
// options or a non-empty out_dir without `overwrite` (nothing is written then), io_error when the disk
// refuses, cancelled_error when `progress` returns false (adapters already written stay complete).
synth_result write_synthetic_fleet(const synth_options& options, const synth_progress& progress = {});

// safetensors __metadata__ keys recording the planted truth next to {"format": "pt"}.
inline constexpr const char* metadata_group = "lorafleet.group";       // decimal group index
inline constexpr const char* metadata_clusters = "lorafleet.clusters"; // decimal K
inline constexpr const char* metadata_shared_a = "lorafleet.shared_a"; // "true" or "false"
inline constexpr const char* metadata_seed = "lorafleet.seed";         // decimal seed
inline constexpr const char* metadata_index = "lorafleet.index";       // decimal adapter index

} // namespace lorafleet::synth
