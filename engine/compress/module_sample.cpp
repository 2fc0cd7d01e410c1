// Module sampling and the module-subset source (see module_sample.hpp).
#include "engine/compress/module_sample.hpp"

#include "engine/core/error.hpp"
#include "engine/core/random.hpp"

#include <algorithm>
#include <numeric>
#include <string>

namespace lorafleet::compress {

std::vector<std::size_t> sample_modules(std::size_t module_count, std::size_t count, std::uint64_t seed) {
    std::vector<std::size_t> all(module_count);
    std::iota(all.begin(), all.end(), std::size_t{0});
    if (count >= module_count) return all;
    auto g = random_stream::derive(seed, {0x5a3b1e});
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t j = i + std::size_t(g.below(module_count - i));
        std::swap(all[i], all[j]);
    }
    all.resize(count);
    std::sort(all.begin(), all.end());
    return all;
}

ModuleSubsetSource::ModuleSubsetSource(ModuleSource& base, std::vector<std::size_t> modules)
    : m_base(base), m_modules(std::move(modules)) {
    if (m_modules.empty()) throw usage_error("module subset", "no modules selected");
    std::vector<bool> seen(base.module_count(), false);
    for (std::size_t m : m_modules) {
        if (m >= base.module_count())
            throw validation_error("module subset", "module index " + std::to_string(m) +
                                                        " is out of range (" +
                                                        std::to_string(base.module_count()) + " modules)");
        if (seen[m])
            throw validation_error("module subset", "module index " + std::to_string(m) + " is repeated");
        seen[m] = true;
    }
}

} // namespace lorafleet::compress
