// A seeded sample of a fleet's modules, and a ModuleSource that shows only those modules of another
// source: what a quick estimate (the console's error-vs-rank sweep) compresses instead of the whole fleet.
// Adapter indices and names are the base source's, so results line up with the full fleet's adapters.
// Invariant: the subset's module indices are distinct and valid in the base (checked at construction).
// Thread affinity: as the base source (the subset only forwards; it holds a reference, not a copy).
#pragma once

#include "engine/compress/module_source.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lorafleet::compress {

// `count` distinct module indices out of [0, module_count), ascending; all of them when count >=
// module_count. Deterministic for a seed (a partial Fisher-Yates shuffle with the engine's rng).
std::vector<std::size_t> sample_modules(std::size_t module_count, std::size_t count, std::uint64_t seed);

class ModuleSubsetSource final : public ModuleSource {
public:
    // Throws validation_error for an index out of range or repeated, usage_error for an empty list.
    ModuleSubsetSource(ModuleSource& base, std::vector<std::size_t> modules);

    std::size_t adapter_count() const override { return m_base.adapter_count(); }
    std::string adapter_name(std::size_t adapter) const override { return m_base.adapter_name(adapter); }
    std::size_t module_count() const override { return m_modules.size(); }
    module_shape module(std::size_t m) const override { return m_base.module(m_modules.at(m)); }
    module_batch load(std::size_t m) override { return m_base.load(m_modules.at(m)); }

    // Index in the base source of the subset's module m.
    std::size_t base_module(std::size_t m) const { return m_modules.at(m); }

private:
    ModuleSource& m_base;
    std::vector<std::size_t> m_modules;
};

} // namespace lorafleet::compress
