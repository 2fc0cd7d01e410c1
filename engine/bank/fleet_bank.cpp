// compress_adapters_to_bank and its helpers (see fleet_bank.hpp).
#include "engine/bank/fleet_bank.hpp"

#include "engine/bank/bank_builder.hpp"
#include "engine/compress/peft_module_source.hpp"
#include "engine/core/error.hpp"
#include "engine/io/fleet.hpp"

#include <set>
#include <string>

namespace lorafleet::bank {

void check_unique_adapter_names(const io::fleet& adapters) {
    std::set<std::string> names;
    for (const auto& a : adapters)
        if (!names.insert(a->name).second)
            throw validation_error(a->dir.string(), "two adapters are named '" + a->name +
                                                        "'; names (folder names) must be unique in a bank");
}

nlohmann::json compression_parameters(const compress::compress_options& options,
                                      const std::string& backend_name) {
    return nlohmann::json{
        {"normalize", options.jd.norm == compress::normalization::unit ? "unit" : "none"},
        {"init", options.jd.init == compress::jd_init::hosvd ? "hosvd" : "random"},
        {"seed", options.jd.seed},
        {"clusters", options.clusters == 0 ? std::string("auto") : std::to_string(options.clusters)},
        {"target_error", options.target_error},
        {"device", backend_name},
        {"max_sweeps", options.jd.max_sweeps},
        {"tol", options.jd.tol}};
}

fleet_bank compress_adapters_to_bank(const io::fleet& adapters,
                                     compress::CompressBackend& backend,
                                     const compress::compress_options& options,
                                     std::optional<io::model_geometry> base, int threads,
                                     const compress::progress_callback& progress) {
    check_unique_adapter_names(adapters);
    compress::PeftModuleSource source(adapters, threads);
    fleet_bank out;
    out.result = compress::compress_fleet(source, backend, options, progress);
    std::vector<adapter_record> records;
    records.reserve(adapters.size());
    for (const auto& a : adapters) {
        records.push_back({a->dir.string(), a->config.base_model_name_or_path, a->max_rank()});
        out.bytes_original += a->weight_bytes();
    }
    out.bank = bank_from_result(out.result, records, std::move(base),
                                compression_parameters(options, backend.name()));
    return out;
}

} // namespace lorafleet::bank
