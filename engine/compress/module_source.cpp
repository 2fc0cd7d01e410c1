// InMemoryModuleSource (see module_source.hpp).
#include "engine/compress/module_source.hpp"

#include "engine/core/error.hpp"

#include <algorithm>

namespace lorafleet::compress {

InMemoryModuleSource::InMemoryModuleSource(std::size_t adapters, std::vector<std::string> adapter_names)
    : m_adapters(adapters), m_names(std::move(adapter_names)) {
    if (!m_names.empty() && m_names.size() != adapters)
        throw usage_error("in-memory fleet", "adapter names do not match the adapter count");
}

std::size_t InMemoryModuleSource::add_module(std::string name, std::int64_t d_out, std::int64_t d_in) {
    if (d_out <= 0 || d_in <= 0) throw shape_mismatch(name, "module shape must be positive");
    m_modules.push_back({{std::move(name), d_out, d_in}, std::make_shared<std::vector<owned_factors>>()});
    m_loads_per_module.push_back(0);
    return m_modules.size() - 1;
}

void InMemoryModuleSource::set_factors(std::size_t m, owned_factors factors) {
    auto& mod = m_modules.at(m);
    if (factors.adapter >= m_adapters)
        throw usage_error(mod.shape.name,
                          "adapter index " + std::to_string(factors.adapter) + " out of range");
    if (factors.rank <= 0 || static_cast<std::int64_t>(factors.a.size()) != factors.rank * mod.shape.d_in ||
        static_cast<std::int64_t>(factors.b.size()) != mod.shape.d_out * factors.rank)
        throw shape_mismatch(mod.shape.name, "factors of adapter " + std::to_string(factors.adapter) +
                                                 " do not match the module shape");
    // Copy-on-write: batches handed out earlier keep the old storage.
    auto next = std::make_shared<std::vector<owned_factors>>(*mod.factors);
    auto it = std::lower_bound(next->begin(), next->end(), factors.adapter,
                               [](const owned_factors& f, std::size_t a) { return f.adapter < a; });
    if (it != next->end() && it->adapter == factors.adapter)
        *it = std::move(factors);
    else
        next->insert(it, std::move(factors));
    mod.factors = std::move(next);
}

std::string InMemoryModuleSource::adapter_name(std::size_t adapter) const {
    return m_names.empty() ? ModuleSource::adapter_name(adapter) : m_names.at(adapter);
}

module_shape InMemoryModuleSource::module(std::size_t m) const {
    return m_modules.at(m).shape;
}

module_batch InMemoryModuleSource::load(std::size_t m) {
    const auto& mod = m_modules.at(m);
    ++m_loads;
    ++m_loads_per_module[m];
    module_batch batch;
    batch.name = mod.shape.name;
    batch.d_out = mod.shape.d_out;
    batch.d_in = mod.shape.d_in;
    batch.adapters.reserve(mod.factors->size());
    for (const auto& f : *mod.factors)
        batch.adapters.push_back(
            {f.adapter, f.rank, std::span<const float>(f.a), std::span<const float>(f.b)});
    batch.storage = mod.factors;
    return batch;
}

} // namespace lorafleet::compress
