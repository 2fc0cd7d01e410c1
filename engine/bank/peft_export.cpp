#include "engine/bank/peft_export.hpp"

#include "engine/core/error.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/io/peft_writer.hpp"

#include <algorithm>

namespace lorafleet::bank {

namespace {
std::filesystem::path clean_target(const std::filesystem::path& out) {
    return out.has_filename() ? out : out.parent_path();
}

// Writes every chosen adapter into the (staging) folder `out`.
void write_export(const compressed_bank& bank, const std::vector<std::size_t>& chosen,
                  const std::filesystem::path& out, const peft_export_options& options);
} // namespace

void check_export_target(const std::filesystem::path& out_in, bool overwrite) {
    namespace fs = std::filesystem;
    const auto out = clean_target(out_in);
    std::error_code ec;
    const auto status = fs::symlink_status(out, ec);
    if (!fs::exists(status)) return;
    if (!fs::is_directory(status))
        throw usage_error(out.string(), "exists and is not a folder; refusing to replace it");
    if (fs::is_empty(out, ec)) return;
    if (!overwrite) throw usage_error(out.string(), "already exists (use --overwrite to replace the export)");
    for (fs::directory_iterator it(out, ec), end; !ec && it != end; it.increment(ec)) {
        const auto s = it->symlink_status(ec);
        if (!fs::is_directory(s) ||
            !fs::is_regular_file(fs::symlink_status(it->path() / "adapter_config.json", ec)))
            throw usage_error(out.string(),
                              "holds things other than PEFT adapter folders; refusing to replace it");
    }
}

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
            if (std::find(chosen.begin(), chosen.end(), *i) == chosen.end()) chosen.push_back(*i);
        }
    }
    if (bank.cores.size() != bank.modules.size())
        throw usage_error(out.string(), "the bank was read without its tensors; cannot export");
    for (const std::size_t i : chosen)
        if (const auto problem = io::adapter_name_problem(bank.adapters[i].name); !problem.empty())
            throw validation_error(out.string(), problem);
    check_export_target(out, options.overwrite);
    const auto target = clean_target(out);
    io::remove_stale_staging(target);
    const auto staged = io::make_staging_dir(target);
    try {
        write_export(bank, chosen, staged, options);
        io::sync_tree(staged);
        io::swap_dir_into_place(staged, target);
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(staged, ec);
        throw;
    }
    std::vector<std::filesystem::path> written;
    for (const std::size_t i : chosen)
        written.push_back(out / bank.adapters[i].name);
    if (options.progress) options.progress(chosen.size(), chosen.size());
    return written;
}

namespace {
void write_export(const compressed_bank& bank, const std::vector<std::size_t>& chosen,
                  const std::filesystem::path& out, const peft_export_options& options) {
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
                         {"lorafleet.method", compress::to_string(bank.kind)}};
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
        io::write_peft_adapter(out / adapter.name, spec, false);
    }
}
} // namespace

} // namespace lorafleet::bank
