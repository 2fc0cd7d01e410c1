// RawLoraDelta: see the header. For a run of consecutive tokens with the same slot: T = X·Aᵀ [run, r], then
// Y += s · T·Bᵀ [run, d_out] (two small batch-invariant products, so a token's delta does not depend on
// its neighbours in the step).
#include "engine/serve/adapters/raw_lora_delta.hpp"

#include "engine/core/error.hpp"

#include "engine/serve/model/gemm.hpp"

#include <limits>

namespace lorafleet::serve {

void RawLoraDelta::set_module(int slot, int layer, module_kind m, lora_module_weights w) {
    const auto shape = m_geometry.linear_shape(module_name(m));
    const std::string where = "adapter slot " + std::to_string(slot) + " layer " + std::to_string(layer) +
                              " " + std::string(module_name(m));
    if (slot < 0 || layer < 0 || layer >= m_geometry.num_layers)
        throw usage_error(where, "slot or layer out of range");
    if (w.rank <= 0 || w.a.size() != std::size_t(w.rank) * std::size_t(shape->d_in) ||
        w.b.size() != std::size_t(shape->d_out) * std::size_t(w.rank))
        throw shape_mismatch(where, "A must be [r, " + std::to_string(shape->d_in) + "] and B [" +
                                        std::to_string(shape->d_out) +
                                        ", r] with r = " + std::to_string(w.rank));
    m_modules[{slot, layer, static_cast<int>(m)}] = std::move(w);
}

void RawLoraDelta::erase_slot(int slot) {
    m_modules.erase(
        m_modules.lower_bound({slot, std::numeric_limits<int>::min(), std::numeric_limits<int>::min()}),
        m_modules.upper_bound({slot, std::numeric_limits<int>::max(), std::numeric_limits<int>::max()}));
}

void RawLoraDelta::apply(int layer, module_kind m, const float* x, float* y, int n_tokens,
                         std::span<const int> token_adapter, worker_pool*) {
    const auto shape = m_geometry.linear_shape(module_name(m));
    const int d_in = static_cast<int>(shape->d_in), d_out = static_cast<int>(shape->d_out);
    for (int t0 = 0; t0 < n_tokens;) {
        const int slot = token_adapter[std::size_t(t0)];
        int t1 = t0 + 1;
        while (t1 < n_tokens && token_adapter[std::size_t(t1)] == slot)
            ++t1;
        const int run = t1 - t0;
        auto it = slot < 0 ? m_modules.end() : m_modules.find({slot, layer, static_cast<int>(m)});
        if (it != m_modules.end()) {
            const lora_module_weights& w = it->second;
            if (m_tmp.size() < std::size_t(run) * std::size_t(w.rank))
                m_tmp.resize(std::size_t(run) * w.rank);
            gemm_nt(run, w.rank, d_in, 1.0f, x + std::size_t(t0) * d_in, d_in, w.a.data(), d_in, m_tmp.data(),
                    w.rank, false);
            gemm_nt(run, d_out, w.rank, w.scale, m_tmp.data(), w.rank, w.b.data(), w.rank,
                    y + std::size_t(t0) * d_out, d_out, true);
        }
        t0 = t1;
    }
}

} // namespace lorafleet::serve
