// upload_bank (see the header): flattens a compressed_bank into kernels::bank_module_source views (the
// bank's own float vectors, nothing copied on the host) and hands them to kernels::device_bank::create.
#include "engine/backend/cuda/cuda_bank.hpp"

#include "engine/backend/cuda/cuda_transformer.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/adapters/adapter_delta.hpp"

namespace lorafleet::serve {

std::unique_ptr<kernels::device_bank> upload_bank(const bank::compressed_bank& bank,
                                                  const io::model_geometry& base, const std::string& where,
                                                  kernels::device_precision precision) {
    bank.validate(where);
    std::vector<int> slot_cluster;
    for (const bank::bank_adapter& a : bank.adapters)
        slot_cluster.push_back(a.cluster);
    return upload_bank(bank, bank.cores, slot_cluster, base, where, precision);
}

std::unique_ptr<kernels::device_bank> upload_bank(const bank::compressed_bank& bank,
                                                  const io::model_geometry& base, const std::string& where) {
    return upload_bank(bank, base, where, serving_device_precision());
}

std::unique_ptr<kernels::device_bank> upload_bank(const bank::compressed_bank& shape,
                                                  const std::vector<std::vector<float>>& cores,
                                                  const std::vector<int>& slot_cluster,
                                                  const io::model_geometry& base, const std::string& where,
                                                  kernels::device_precision precision) {
    if (cores.size() != shape.modules.size() || shape.bases.size() != shape.modules.size())
        throw shape_mismatch(where, "the bank's cores or bases do not match its modules");
    const std::size_t core_floats = slot_cluster.size() * std::size_t(shape.core_size());
    std::vector<kernels::bank_module_source> modules;
    for (std::size_t m = 0; m < shape.modules.size(); ++m) {
        const auto& mod = shape.modules[m];
        const auto kind = parse_module_kind(mod.short_name);
        const auto dims = base.linear_shape(mod.short_name);
        if (!kind || !dims || mod.layer < 0 || mod.layer >= base.num_layers || dims->d_out != mod.d_out ||
            dims->d_in != mod.d_in)
            throw shape_mismatch(where,
                                 "bank module " + mod.path + " does not fit the base model " + base.name);
        if (!cores[m].empty() && cores[m].size() != core_floats)
            throw shape_mismatch(where, "bank module " + mod.path + " has " +
                                            std::to_string(cores[m].size()) + " core values, expected " +
                                            std::to_string(core_floats));
        kernels::bank_module_source src;
        src.layer = mod.layer;
        src.kind = static_cast<int>(*kind);
        src.d_in = static_cast<int>(mod.d_in);
        src.d_out = static_cast<int>(mod.d_out);
        for (const bank::cluster_basis& b : shape.bases[m]) {
            src.u.push_back(b.empty() ? nullptr : b.u.data());
            src.vt.push_back(b.empty() ? nullptr : b.vt.data());
        }
        src.cores = cores[m].empty() ? nullptr : cores[m].data();
        modules.push_back(std::move(src));
    }
    std::unique_ptr<kernels::device_bank> out;
    throw_if_failed(kernels::device_bank::create(base.num_layers, shape.rank, shape.clusters,
                                                 shape.kind == compress::jd_method::full, slot_cluster,
                                                 modules, out, precision),
                    where);
    return out;
}

} // namespace lorafleet::serve
