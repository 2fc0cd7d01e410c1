// Error statistics of a bank (see error_stats.hpp).
#include "engine/analysis/error_stats.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>

namespace lorafleet::analysis {

histogram error_histogram(const std::vector<double>& values, int bins, double lo, double hi) {
    if (bins < 1) throw usage_error("error histogram", "needs at least one bin");
    if (!(hi > lo)) throw usage_error("error histogram", "the range must not be empty");
    histogram h;
    h.lo = lo;
    h.width = (hi - lo) / bins;
    h.counts.assign(std::size_t(bins), 0);
    for (double v : values) {
        if (!std::isfinite(v)) continue;
        if (v < lo || v > hi) {
            ++h.outside;
            continue;
        }
        const auto bin =
            std::min<long long>(bins - 1, static_cast<long long>(std::floor((v - lo) / h.width)));
        ++h.counts[std::size_t(std::max<long long>(0, bin))];
    }
    return h;
}

value_range histogram_range(const std::vector<double>& values) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (double v : values)
        if (std::isfinite(v)) {
            lo = std::min(lo, v);
            hi = std::max(hi, v);
        }
    if (!(lo <= hi)) return {0.0, 1e-6};
    if (hi - lo > 1e-12 * std::max(1.0, std::abs(hi))) return {lo, hi};
    const double w = lo == 0 ? 1e-6 : 0.05 * std::abs(lo);
    return {lo >= 0 ? std::max(0.0, lo - w) : lo - w, hi + w};
}

int default_bin_count(std::size_t n) {
    return std::clamp(int(std::lround(std::sqrt(double(n)))), 8, 40);
}

std::vector<double> adapter_mean_errors(const bank::compressed_bank& bank) {
    std::vector<double> out;
    out.reserve(bank.adapters.size());
    for (const auto& a : bank.adapters)
        out.push_back(a.mean_error());
    return out;
}

std::vector<std::string> ordered_module_names(std::vector<std::string> names) {
    static const std::array<std::string, 7> canonical = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                         "gate_proj", "up_proj", "down_proj"};
    const auto rank = [](const std::string& name) {
        const auto it = std::find(canonical.begin(), canonical.end(), name);
        return it == canonical.end() ? canonical.size() : std::size_t(it - canonical.begin());
    };
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    std::stable_sort(names.begin(), names.end(),
                     [&](const std::string& a, const std::string& b) { return rank(a) < rank(b); });
    return names;
}

layer_module_grid layer_module_errors(const bank::compressed_bank& bank) {
    layer_module_grid out;
    std::vector<std::string> names;
    for (const auto& m : bank.modules) {
        names.push_back(m.short_name);
        out.layers.push_back(m.layer);
    }
    out.modules = ordered_module_names(std::move(names));
    std::sort(out.layers.begin(), out.layers.end());
    out.layers.erase(std::unique(out.layers.begin(), out.layers.end()), out.layers.end());

    const std::size_t cells = out.layers.size() * out.modules.size();
    std::vector<double> sum(cells, 0.0);
    out.count.assign(cells, 0);
    for (std::size_t m = 0; m < bank.modules.size(); ++m) {
        const auto row =
            std::size_t(std::lower_bound(out.layers.begin(), out.layers.end(), bank.modules[m].layer) -
                        out.layers.begin());
        const auto col =
            std::size_t(std::find(out.modules.begin(), out.modules.end(), bank.modules[m].short_name) -
                        out.modules.begin());
        const std::size_t cell = row * out.modules.size() + col;
        for (const auto& a : bank.adapters) {
            if (m >= a.errors.size() || !std::isfinite(a.errors[m])) continue;
            sum[cell] += a.errors[m];
            ++out.count[cell];
        }
    }
    out.mean.assign(cells, std::numeric_limits<double>::quiet_NaN());
    for (std::size_t c = 0; c < cells; ++c)
        if (out.count[c] > 0) out.mean[c] = sum[c] / out.count[c];
    return out;
}

} // namespace lorafleet::analysis
