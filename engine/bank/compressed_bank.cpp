#include "engine/bank/compressed_bank.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

namespace lorafleet::bank {

bool bank_adapter::has_module(std::size_t m) const {
    return m < errors.size() && !std::isnan(errors[m]);
}

double bank_adapter::mean_error() const {
    double sum = 0;
    int n = 0;
    for (double e : errors)
        if (!std::isnan(e)) {
            sum += e;
            ++n;
        }
    return n ? sum / n : 0.0;
}

std::optional<std::size_t> compressed_bank::find_adapter(const std::string& name) const {
    for (std::size_t i = 0; i < adapters.size(); ++i)
        if (adapters[i].name == name) return i;
    return std::nullopt;
}

std::vector<float> compressed_bank::expand_core(std::size_t m, std::size_t i) const {
    const auto& mod = modules.at(m);
    const auto& basis = bases.at(m).at(std::size_t(adapters.at(i).cluster));
    std::vector<float> out(std::size_t(mod.d_out) * std::size_t(rank), 0.0f);
    if (basis.empty()) return out;
    const float* s = core(m, i);
    for (std::int64_t row = 0; row < mod.d_out; ++row) {
        const float* u = basis.u.data() + row * rank;
        float* o = out.data() + row * rank;
        if (kind == compress::jd_method::diag) {
            for (int k = 0; k < rank; ++k)
                o[k] = u[k] * s[k];
        } else {
            for (int j = 0; j < rank; ++j) {
                double acc = 0;
                for (int k = 0; k < rank; ++k)
                    acc += double(u[k]) * s[k * rank + j];
                o[j] = float(acc);
            }
        }
    }
    return out;
}

std::vector<float> compressed_bank::dense_update(std::size_t m, std::size_t i) const {
    const auto& mod = modules.at(m);
    const auto& basis = bases.at(m).at(std::size_t(adapters.at(i).cluster));
    std::vector<float> out(std::size_t(mod.d_out) * std::size_t(mod.d_in), 0.0f);
    if (basis.empty()) return out;
    const auto us = expand_core(m, i); // [d_out, r]
    for (std::int64_t row = 0; row < mod.d_out; ++row)
        for (std::int64_t col = 0; col < mod.d_in; ++col) {
            double acc = 0;
            for (int k = 0; k < rank; ++k)
                acc += double(us[row * rank + k]) * basis.vt[k * mod.d_in + col];
            out[row * mod.d_in + col] = float(acc);
        }
    return out;
}

double compressed_bank::mean_error() const {
    if (adapters.empty()) return 0.0;
    double sum = 0;
    for (const auto& a : adapters)
        sum += a.mean_error();
    return sum / double(adapters.size());
}

double compressed_bank::max_error() const {
    double mx = 0;
    for (const auto& a : adapters)
        mx = std::max(mx, a.mean_error());
    return mx;
}

std::uint64_t compressed_bank::stored_parameters() const {
    std::uint64_t n = 0;
    for (const auto& per_module : bases)
        for (const auto& b : per_module)
            n += b.u.size() + b.vt.size();
    for (const auto& c : cores)
        n += c.size();
    return n;
}

void compressed_bank::validate(const std::string& where) const {
    if (rank <= 0) throw validation_error(where, "rank must be positive");
    if (clusters <= 0) throw validation_error(where, "cluster count must be positive");
    if (bases.size() != modules.size() || cores.size() != modules.size())
        throw shape_mismatch(where,
                             "bases/cores do not cover the " + std::to_string(modules.size()) + " modules");
    std::unordered_set<std::string> names;
    for (const auto& a : adapters) {
        if (a.cluster < 0 || a.cluster >= clusters)
            throw validation_error(where, "adapter '" + a.name + "' has cluster " +
                                              std::to_string(a.cluster) + " outside [0, " +
                                              std::to_string(clusters) + ")");
        if (a.errors.size() != modules.size())
            throw shape_mismatch(where, "adapter '" + a.name + "' has " + std::to_string(a.errors.size()) +
                                            " module errors for " + std::to_string(modules.size()) +
                                            " modules");
        if (!names.insert(a.name).second)
            throw validation_error(where, "adapter name '" + a.name + "' repeats");
    }
    for (std::size_t m = 0; m < modules.size(); ++m) {
        const auto& mod = modules[m];
        if (mod.d_out <= 0 || mod.d_in <= 0)
            throw shape_mismatch(where, "module " + mod.path + " has no shape");
        if (bases[m].size() != std::size_t(clusters))
            throw shape_mismatch(where, "module " + mod.path + " has bases for " +
                                            std::to_string(bases[m].size()) + " clusters, expected " +
                                            std::to_string(clusters));
        if (cores[m].size() != adapters.size() * std::size_t(core_size()))
            throw shape_mismatch(where, "module " + mod.path + ": cores hold " +
                                            std::to_string(cores[m].size()) + " values, expected " +
                                            std::to_string(adapters.size() * std::size_t(core_size())));
        for (int c = 0; c < clusters; ++c) {
            const auto& b = bases[m][std::size_t(c)];
            if (b.empty()) {
                // Allowed only when nothing of the adapter's module is represented (error 1): an
                // incrementally added adapter whose cluster never saw this module.
                for (const auto& a : adapters)
                    if (a.cluster == c && a.has_module(m) && a.errors[m] < 1.0 - 1e-9)
                        throw validation_error(where, "module " + mod.path + ": cluster " +
                                                          std::to_string(c) + " has no basis but adapter '" +
                                                          a.name + "' uses it");
                continue;
            }
            if (b.u.size() != std::size_t(mod.d_out * rank) || b.vt.size() != std::size_t(rank * mod.d_in))
                throw shape_mismatch(where, "module " + mod.path + ", cluster " + std::to_string(c) +
                                                ": basis is not [" + std::to_string(mod.d_out) + ", " +
                                                std::to_string(rank) + "] / [" + std::to_string(rank) + ", " +
                                                std::to_string(mod.d_in) + "]");
        }
    }
}

} // namespace lorafleet::bank
