// Adding adapters to a bank (see bank_add.hpp). Both entry points run bank_builder's add_adapters, the
// one projection; project_onto_bank runs it on a copy that holds the bank's modules and bases and no
// adapter, so the projected adapter lands at index 0 and the bank is left as it was.
#include "engine/bank/bank_add.hpp"

#include "engine/compress/peft_module_source.hpp"
#include "engine/core/error.hpp"

namespace lorafleet::bank {

std::vector<added_adapter> add_to_bank(compressed_bank& bank, const io::fleet& adapters,
                                       compress::CompressBackend& backend, int threads) {
    compress::PeftModuleSource source(adapters, threads);
    return add_adapters(bank, source, backend);
}

projected_adapter project_onto_bank(const compressed_bank& bank,
                                    std::shared_ptr<const io::peft_adapter> adapter,
                                    compress::CompressBackend& backend, const std::string& name) {
    if (!adapter) throw usage_error("bank", "project_onto_bank: no adapter");
    compressed_bank scratch;
    scratch.kind = bank.kind;
    scratch.rank = bank.rank;
    scratch.clusters = bank.clusters;
    scratch.modules = bank.modules;
    scratch.bases = bank.bases;
    scratch.cores.assign(bank.modules.size(), {});
    compress::PeftModuleSource source({std::move(adapter)}, 1);
    projected_adapter out;
    out.summary = add_adapters(scratch, source, backend).front();
    out.adapter = std::move(scratch.adapters.front());
    if (!name.empty()) out.adapter.name = out.summary.name = name;
    const std::size_t cs = std::size_t(scratch.core_size());
    out.cores.resize(scratch.modules.size());
    for (std::size_t m = 0; m < scratch.modules.size(); ++m)
        if (out.adapter.has_module(m)) {
            const float* core = scratch.core(m, 0);
            out.cores[m].assign(core, core + cs);
        }
    return out;
}

} // namespace lorafleet::bank
