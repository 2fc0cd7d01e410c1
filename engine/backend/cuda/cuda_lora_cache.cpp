// cuda_lora_cache (see the header): sizes the pages, and gives kernels::device_lora_cache a loader that
// converts one registered adapter's modules to float32 factors in host scratch for the copy.
#include "engine/backend/cuda/cuda_lora_cache.hpp"

#include "engine/backend/cuda/cuda_transformer.hpp"
#include "engine/core/error.hpp"
#include "engine/io/fleet.hpp"
#include "engine/serve/adapters/adapter_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"

namespace lorafleet::serve {

cuda_lora_cache::cuda_lora_cache(const io::model_geometry& base, io::fleet adapters,
                                 std::uint64_t cache_bytes, kernels::device_precision precision)
    : m_adapters(std::move(adapters)) {
    for (const auto& a : m_adapters) {
        if (!a) continue; // a removed slot
        for (const auto& mod : a->modules)
            if (!parse_module_kind(mod.short_name) || mod.layer < 0 || mod.layer >= base.num_layers)
                throw validation_error(a->dir.string(),
                                       "module " + mod.path + " is not a decoder linear of " + base.name);
        m_page_bytes = std::max(m_page_bytes, CachedLoraDelta::resident_bytes_of(*a));
    }
    if (m_page_bytes == 0) m_page_bytes = sizeof(float);
    // resident_bytes_of counts float32 factors; a 16-bit cache stores each page in half of that.
    const std::uint64_t f32_page = m_page_bytes;
    if (precision != kernels::device_precision::fp32) m_page_bytes = (f32_page + 1) / 2;
    m_pages = static_cast<int>(std::min<std::uint64_t>(cache_bytes / m_page_bytes, 1u << 20));
    if (m_pages < 1)
        throw validation_error("adapter cache", "the largest adapter needs " + std::to_string(m_page_bytes) +
                                                    " bytes, more than the whole cache (" +
                                                    std::to_string(cache_bytes) + ")");
    kernels::device_lora_cache::loader load = [this](int slot,
                                                     std::vector<kernels::lora_module_source>& out) {
        const io::peft_adapter& a = *m_adapters[std::size_t(slot)];
        m_loading.clear();
        for (const auto& mod : a.modules)
            m_loading.push_back(mod.factors_f32()); // scale folded into b
        for (std::size_t i = 0; i < a.modules.size(); ++i)
            out.push_back({a.modules[i].layer, static_cast<int>(*parse_module_kind(a.modules[i].short_name)),
                           m_loading[i].rank, 1.0f, m_loading[i].a.data(), m_loading[i].b.data()});
        return kernels::serve_status{};
    };
    throw_if_failed(kernels::device_lora_cache::create(device_geometry(base), f32_page, m_pages, load,
                                                       m_cache, precision),
                    "adapter cache");
}

std::size_t cuda_lora_cache::prepare(std::span<const int> slots) {
    for (const int s : slots)
        if (s < 0 || std::size_t(s) >= m_adapters.size() || !m_adapters[std::size_t(s)])
            throw usage_error("adapter cache", "adapter slot " + std::to_string(s) + " is not registered");
    int resident = 0;
    throw_if_failed(m_cache->prepare(slots.data(), static_cast<int>(slots.size()), &resident, nullptr),
                    "adapter cache");
    return std::size_t(resident);
}

} // namespace lorafleet::serve
