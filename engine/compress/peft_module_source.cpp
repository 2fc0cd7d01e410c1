#include "engine/compress/peft_module_source.hpp"

#include "engine/compress/parallel.hpp"
#include "engine/core/error.hpp"
#include "engine/io/fleet.hpp"

#include <algorithm>
#include <map>
#include <tuple>

namespace lorafleet::compress {

PeftModuleSource::PeftModuleSource(io::fleet adapters, int threads)
    : m_adapters(std::move(adapters)), m_threads(threads > 0 ? threads : hardware_threads()) {
    // path -> entry index; the first adapter seen with a module fixes its shape.
    std::map<std::string, std::size_t> index;
    std::vector<std::size_t> first_owner;
    for (std::size_t i = 0; i < m_adapters.size(); ++i) {
        const auto& a = *m_adapters[i];
        for (std::size_t k = 0; k < a.modules.size(); ++k) {
            const auto& mod = a.modules[k];
            auto [it, inserted] = index.emplace(mod.path, m_modules.size());
            if (inserted) {
                m_modules.push_back({{mod.path, mod.d_out, mod.d_in}, mod.layer, mod.short_name, {}});
                first_owner.push_back(i);
            }
            auto& entry = m_modules[it->second];
            if (entry.shape.d_out != mod.d_out || entry.shape.d_in != mod.d_in) {
                const auto& other = *m_adapters[first_owner[it->second]];
                throw shape_mismatch(
                    a.dir.string(),
                    "module " + mod.path + " is [" + std::to_string(mod.d_out) + ", " +
                        std::to_string(mod.d_in) + "] but adapter '" + other.name + "' has [" +
                        std::to_string(entry.shape.d_out) + ", " + std::to_string(entry.shape.d_in) +
                        "]: adapters for different base models cannot be compressed together");
            }
            entry.members.emplace_back(i, k);
        }
    }
    // Canonical order: layer, then q,k,v,o,gate,up,down, then path (stable across runs and inputs).
    std::sort(m_modules.begin(), m_modules.end(), [](const module_entry& x, const module_entry& y) {
        return std::make_tuple(x.layer, io::module_order(x.short_name), x.shape.name) <
               std::make_tuple(y.layer, io::module_order(y.short_name), y.shape.name);
    });
}

module_batch PeftModuleSource::load(std::size_t m) {
    const auto& entry = m_modules.at(m);
    auto storage = std::make_shared<std::vector<io::lora_factors>>(entry.members.size());
    {
        thread_pool pool(std::min<int>(m_threads, int(std::max<std::size_t>(1, entry.members.size()))));
        pool.parallel_for(entry.members.size(), [&](std::size_t begin, std::size_t end, int) {
            for (std::size_t j = begin; j < end; ++j) {
                const auto [adapter, module] = entry.members[j];
                const auto& a = *m_adapters[adapter];
                (*storage)[j] = a.modules[module].factors_f32();
                if (a.file) { // converted: the mapped bytes need not stay in memory
                    a.file->release_pages(a.modules[module].a);
                    a.file->release_pages(a.modules[module].b);
                }
            }
        });
    }
    module_batch batch;
    batch.name = entry.shape.name;
    batch.d_out = entry.shape.d_out;
    batch.d_in = entry.shape.d_in;
    batch.adapters.reserve(entry.members.size());
    for (std::size_t j = 0; j < entry.members.size(); ++j) {
        const auto& f = (*storage)[j];
        batch.adapters.push_back({entry.members[j].first, f.rank, f.a, f.b});
    }
    batch.storage = storage;
    return batch;
}

} // namespace lorafleet::compress
