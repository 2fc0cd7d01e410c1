#include "engine/bank/peft_export.hpp"

#include "engine/core/error.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/io/peft_writer.hpp"

#include <algorithm>

namespace lorafleet::bank {

std::vector<std::filesystem::path> export_peft_adapters(const compressed_bank& bank,
                                                        const std::filesystem::path& out,
                                                        const peft_export_options& options) {
    std::vector<std::size_t> chosen;
    if (options.adapters.empty()) {
        for (std::size_t i = 0; i < bank.adapters.size(); ++i)
            chosen.push_back(i);
    } else {
        for (const auto& name : options.adapters) {
            const auto i = bank.find_adapter(name);
            if (!i) throw usage_error(out.string(), "the bank has no adapter named '" + name + "'");
            chosen.push_back(*i);
        }
    }
    if (bank.cores.size() != bank.modules.size())
        throw usage_error(out.string(), "the bank was read without its tensors; cannot export");
    std::vector<std::filesystem::path> written;
    for (std::size_t n = 0; n < chosen.size(); ++n) {
        if (options.progress && !options.progress(n, chosen.size()))
            throw cancelled_error(out.string(), "export cancelled");
        const std::size_t i = chosen[n];
        const auto& adapter = bank.adapters[i];
        io::peft_adapter_spec spec;
        spec.r = bank.rank;
        spec.lora_alpha = bank.rank; // PEFT scale = alpha / r = 1: the factors carry the whole update
        spec.base_model = adapter.base_model;
        spec.weight_dtype = options.weights;
        spec.metadata = {{"lorafleet.bank_cluster", std::to_string(adapter.cluster)},
                         {"lorafleet.method", method_name(bank.kind)}};
        std::vector<std::vector<float>> expanded; // keeps B' alive until written
        expanded.reserve(bank.modules.size());
        for (std::size_t m = 0; m < bank.modules.size(); ++m) {
            if (!adapter.has_module(m)) continue;
            const auto& mod = bank.modules[m];
            const auto& basis = bank.bases[m][std::size_t(adapter.cluster)];
            expanded.push_back(bank.expand_core(m, i));
            spec.modules.push_back({mod.path, bank.rank, mod.d_in, mod.d_out, basis.vt, expanded.back()});
            if (std::find(spec.target_modules.begin(), spec.target_modules.end(), mod.short_name) ==
                spec.target_modules.end())
                spec.target_modules.push_back(mod.short_name);
        }
        std::sort(spec.target_modules.begin(), spec.target_modules.end(),
                  [](const std::string& a, const std::string& b) {
                      return io::module_order(a) < io::module_order(b);
                  });
        if (adapter.name.empty() || adapter.name == "." || adapter.name == ".." ||
            adapter.name.find('/') != std::string::npos)
            throw validation_error(out.string(), "adapter name '" + adapter.name + "' is not a folder name");
        const auto dir = out / adapter.name;
        io::write_peft_adapter(dir, spec, options.overwrite);
        written.push_back(dir);
    }
    if (options.progress) options.progress(chosen.size(), chosen.size());
    return written;
}

} // namespace lorafleet::bank
