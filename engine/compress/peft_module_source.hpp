// A fleet of loaded PEFT adapters seen as a ModuleSource: the bridge from engine/io to the compressor.
// Modules are the union of the adapters' module paths, ordered by layer then q,k,v,o,gate,up,down.
// load(m) converts module m of every adapter that has it from the memory-mapped files to float32 (scale
// folded into B) on a few threads, so only one module's factors are ever resident.
// Invariant (checked at construction): all adapters agree on every shared module's [d_out, d_in] —
// adapters of different base models in one fleet are an error that names them.
#pragma once

#include "engine/compress/module_source.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"

#include <memory>
#include <vector>

namespace lorafleet::compress {

class PeftModuleSource final : public ModuleSource {
public:
    // `threads` converts adapters in parallel (0 = all hardware threads).
    explicit PeftModuleSource(io::fleet adapters, int threads = 0);

    std::size_t adapter_count() const override { return m_adapters.size(); }
    std::string adapter_name(std::size_t adapter) const override { return m_adapters.at(adapter)->name; }
    std::size_t module_count() const override { return m_modules.size(); }
    module_shape module(std::size_t m) const override { return m_modules.at(m).shape; }
    module_batch load(std::size_t m) override;

    const io::peft_adapter& adapter(std::size_t i) const { return *m_adapters.at(i); }
    int layer(std::size_t m) const { return m_modules.at(m).layer; }
    const std::string& short_name(std::size_t m) const { return m_modules.at(m).short_name; }

private:
    struct module_entry {
        module_shape shape;
        int layer = -1;
        std::string short_name;
        std::vector<std::pair<std::size_t, std::size_t>> members; // (adapter index, module index in it)
    };
    io::fleet m_adapters;
    std::vector<module_entry> m_modules;
    int m_threads = 1;
};

} // namespace lorafleet::compress
