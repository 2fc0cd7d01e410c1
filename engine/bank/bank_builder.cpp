#include "engine/bank/bank_builder.hpp"

#include "engine/core/error.hpp"

#include <cmath>
#include <map>

namespace lorafleet::bank {

namespace {

// Packs a compressor core ([r, r] column-major, or [r, 1]) into the bank's row-major layout.
void pack_core(const compress::matrix& core, float* out, compress::jd_method kind, int r) {
    if (kind == compress::jd_method::diag) {
        for (int k = 0; k < r; ++k)
            out[k] = core(k, 0);
        return;
    }
    for (int p = 0; p < r; ++p)
        for (int q = 0; q < r; ++q)
            out[p * r + q] = core(p, q);
}

} // namespace

compressed_bank bank_from_result(const compress::compression_result& result,
                                 const std::vector<adapter_record>& records,
                                 std::optional<io::model_geometry> base, nlohmann::json parameters) {
    if (records.size() != result.adapter_names.size())
        throw usage_error("bank", "adapter records do not match the compressed adapters");
    compressed_bank bank;
    bank.kind = result.method;
    bank.rank = int(result.rank);
    bank.clusters = result.k;
    bank.base = std::move(base);
    bank.parameters = std::move(parameters);
    const int r = bank.rank;
    for (const auto& shape : result.modules) {
        bank_module mod;
        mod.path = shape.name;
        mod.layer = io::module_layer_index(shape.name);
        const auto dot = shape.name.rfind('.');
        mod.short_name = dot == std::string::npos ? shape.name : shape.name.substr(dot + 1);
        mod.d_out = shape.d_out;
        mod.d_in = shape.d_in;
        bank.modules.push_back(std::move(mod));
    }
    for (std::size_t i = 0; i < result.adapter_names.size(); ++i) {
        bank_adapter a;
        a.name = result.adapter_names[i];
        a.source = records[i].source;
        a.base_model = records[i].base_model;
        a.source_rank = records[i].source_rank;
        a.cluster = result.assignment[i];
        a.errors = result.errors[i];
        bank.adapters.push_back(std::move(a));
    }
    const std::size_t n = bank.adapters.size();
    bank.bases.assign(bank.modules.size(), std::vector<cluster_basis>(std::size_t(bank.clusters)));
    bank.cores.assign(bank.modules.size(), std::vector<float>(n * std::size_t(bank.core_size()), 0.0f));
    for (std::size_t m = 0; m < bank.modules.size(); ++m) {
        const auto& mod = bank.modules[m];
        for (int c = 0; c < bank.clusters; ++c) {
            const auto& jb = result.bases[std::size_t(c)][m];
            if (jb.empty()) continue;
            auto& b = bank.bases[m][std::size_t(c)];
            b.u.resize(std::size_t(mod.d_out) * r);
            for (std::int64_t row = 0; row < mod.d_out; ++row)
                for (int k = 0; k < r; ++k)
                    b.u[std::size_t(row) * r + k] = jb.u(row, k);
            // V [d_in, r] column-major is Vᵀ [r, d_in] row-major: the same bytes.
            b.vt.assign(jb.v.data.begin(), jb.v.data.end());
        }
        for (std::size_t i = 0; i < n; ++i) {
            const auto& core = result.cores[i][m];
            if (!core.empty()) pack_core(core, bank.core(m, i), bank.kind, r);
        }
    }
    return bank;
}

compress::compression_result result_from_bank(const compressed_bank& bank) {
    compress::compression_result result;
    result.method = bank.kind;
    result.rank = bank.rank;
    result.k = bank.clusters;
    const int r = bank.rank;
    for (const auto& a : bank.adapters) {
        result.adapter_names.push_back(a.name);
        result.assignment.push_back(a.cluster);
    }
    for (const auto& mod : bank.modules)
        result.modules.push_back({mod.path, mod.d_out, mod.d_in});
    result.bases.assign(std::size_t(bank.clusters), std::vector<compress::jd_basis>(bank.modules.size()));
    for (std::size_t m = 0; m < bank.modules.size(); ++m) {
        const auto& mod = bank.modules[m];
        for (int c = 0; c < bank.clusters; ++c) {
            const auto& b = bank.bases[m][std::size_t(c)];
            if (b.empty()) continue;
            auto& jb = result.bases[std::size_t(c)][m];
            jb.method = result.method;
            jb.u = compress::matrix(mod.d_out, r);
            for (std::int64_t row = 0; row < mod.d_out; ++row)
                for (int k = 0; k < r; ++k)
                    jb.u(row, k) = b.u[std::size_t(row) * r + k];
            jb.v = compress::matrix(mod.d_in, r);
            jb.v.data.assign(b.vt.begin(), b.vt.end());
        }
    }
    return result;
}

std::vector<added_adapter> add_adapters(compressed_bank& bank, compress::PeftModuleSource& source,
                                        compress::CompressBackend& backend) {
    const auto result = result_from_bank(bank);
    std::map<std::string, std::size_t> module_index;
    for (std::size_t m = 0; m < bank.modules.size(); ++m)
        module_index[bank.modules[m].path] = m;
    // Shapes must agree before anything is projected.
    for (std::size_t sm = 0; sm < source.module_count(); ++sm) {
        const auto shape = source.module(sm);
        const auto it = module_index.find(shape.name);
        if (it == module_index.end()) continue;
        const auto& mod = bank.modules[it->second];
        if (mod.d_out != shape.d_out || mod.d_in != shape.d_in)
            throw shape_mismatch(shape.name, "is [" + std::to_string(shape.d_out) + ", " +
                                                 std::to_string(shape.d_in) + "] in the new adapter but [" +
                                                 std::to_string(mod.d_out) + ", " + std::to_string(mod.d_in) +
                                                 "] in the bank");
    }
    std::vector<compress::adapter_projection> projections;
    for (std::size_t i = 0; i < source.adapter_count(); ++i) {
        const auto& name = source.adapter_name(i);
        if (bank.find_adapter(name))
            throw validation_error(source.adapter(i).dir.string(),
                                   "the bank already has an adapter named '" + name + "'");
        for (std::size_t j = 0; j < i; ++j)
            if (source.adapter_name(j) == name)
                throw validation_error(source.adapter(i).dir.string(),
                                       "adapter name '" + name + "' given twice");
        projections.push_back(compress::add_adapter(result, source, i, backend));
        bool any = false;
        for (const auto& core : projections.back().cores)
            any |= !core.empty();
        if (!any)
            throw validation_error(source.adapter(i).dir.string(), "none of its modules is in the bank");
    }
    // Everything projected: append (no partial additions on error above).
    std::vector<added_adapter> added;
    const std::size_t cs = std::size_t(bank.core_size());
    for (std::size_t i = 0; i < projections.size(); ++i) {
        const auto& p = projections[i];
        const auto& adapter = source.adapter(i);
        bank_adapter a;
        a.name = adapter.name;
        a.source = adapter.dir.string();
        a.base_model = adapter.config.base_model_name_or_path;
        a.source_rank = adapter.max_rank();
        a.cluster = p.cluster;
        a.errors = p.errors;
        const std::size_t slot = bank.adapters.size();
        bank.adapters.push_back(a);
        for (std::size_t m = 0; m < bank.modules.size(); ++m) {
            bank.cores[m].resize((slot + 1) * cs, 0.0f);
            if (!p.cores[m].empty()) pack_core(p.cores[m], bank.core(m, slot), bank.kind, bank.rank);
        }
        added.push_back({a.name, a.cluster, p.mean_error, p.unmatched_modules});
    }
    return added;
}

} // namespace lorafleet::bank
