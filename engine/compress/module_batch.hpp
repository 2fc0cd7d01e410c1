// One module's LoRA factors for a set of adapters: the unit every compression backend works on.
// Layout is PEFT's, so a loader can hand over converted tensors without transposing:
//   lora_A  [r_i, d_in]  row-major  == column-major [d_in, r_i]  (that is A_i^T, leading dim d_in)
//   lora_B  [d_out, r_i] row-major  == column-major [r_i, d_out] (that is B_i^T, leading dim r_i)
// with the adapter's scale s_i ALREADY folded into B_i, so Delta W_i = B_i A_i. The spans are
// non-owning; `storage` keeps whatever owns them alive (an owning buffer, a mapped file, ...).
// Invariants (validate()): every adapter's spans have r_i * d_in and d_out * r_i elements, r_i >= 1.
#pragma once

#include "engine/compress/dense.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace lorafleet::compress {

struct adapter_factors {
    std::size_t adapter = 0;  // index of the adapter in the fleet (not its position in the batch)
    std::int64_t rank = 0;    // r_i
    std::span<const float> a; // lora_A, [r_i, d_in] row-major
    std::span<const float> b; // lora_B * s_i, [d_out, r_i] row-major
};

struct module_batch {
    std::string name;       // module path, e.g. "model.layers.7.self_attn.q_proj"
    std::int64_t d_out = 0; // rows of Delta W
    std::int64_t d_in = 0;  // cols of Delta W
    std::vector<adapter_factors> adapters;
    // Optional cache of ||Delta W_i||_F^2 per batch position (empty = not computed yet). Backends use
    // it when its size matches, so a driver that computed norms once does not pay for them again.
    std::vector<double> norms2;
    std::shared_ptr<const void> storage; // owner of the spans' memory (may be null for borrowed data)

    std::size_t size() const { return adapters.size(); }
    // A_i^T as a column-major view [d_in, r_i].
    view a_t(std::size_t pos) const {
        const auto& f = adapters[pos];
        return {f.a.data(), d_in, f.rank, d_in};
    }
    // B_i^T as a column-major view [r_i, d_out] (use op::t in gemm to get B_i).
    view b_t(std::size_t pos) const {
        const auto& f = adapters[pos];
        return {f.b.data(), f.rank, d_out, f.rank};
    }
    // Throws shape_mismatch (naming the module and adapter) when a span's size disagrees with the shapes.
    void validate() const;
};

// Owning input for make_owned_module_batch (tests, synthetic fleets, converted loaders).
struct owned_factors {
    std::size_t adapter = 0;
    std::int64_t rank = 0;
    std::vector<float> a; // [rank, d_in] row-major
    std::vector<float> b; // [d_out, rank] row-major, scale folded in
};

// Builds a module_batch that owns its factors (moved into `storage`). Validates shapes.
module_batch make_owned_module_batch(std::string name, std::int64_t d_out, std::int64_t d_in,
                                     std::vector<owned_factors> factors);

} // namespace lorafleet::compress
