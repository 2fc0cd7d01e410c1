// Error statistics of a compressed bank (the console's Errors tab draws them): the histogram of per-adapter
// mean error over the range of the data and the layer x module matrix of mean error. Errors are the bank's
// relative squared Frobenius errors (method.md §2); NaN marks "absent" and is never counted. Pure functions,
// any thread.
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <string>
#include <vector>

namespace lorafleet::analysis {

struct histogram {
    double lo = 0.0;         // left edge of bin 0
    double width = 0.0;      // bin width (> 0 when there are bins)
    std::vector<int> counts; // [bin]; values in [lo + b w, lo + (b + 1) w), the last bin closed on the right
    int outside = 0;         // finite values outside [lo, hi] (not in any bin)

    double center(std::size_t bin) const { return lo + (double(bin) + 0.5) * width; }
    double hi() const { return lo + double(counts.size()) * width; }
};

// Histogram of the finite values over [lo, hi] in `bins` equal bins. Throws usage_error for bins < 1 or
// hi <= lo.
histogram error_histogram(const std::vector<double>& values, int bins, double lo, double hi);

// The range a histogram of `values` should bin: [smallest, largest] finite value, so the bars resolve the
// data whatever a target line says; widened to [v - w, v + w] (w = 5% of |v|, or 1e-6 for 0, never below
// 0 for v >= 0) when every value is the same v, and [0, 1e-6] without finite values. hi > lo always.
struct value_range {
    double lo = 0.0;
    double hi = 0.0;
};
value_range histogram_range(const std::vector<double>& values);

// A bin count for n values: round(sqrt(n)) clamped to [8, 40].
int default_bin_count(std::size_t n);

// bank_adapter::mean_error() of every adapter, in bank order.
std::vector<double> adapter_mean_errors(const bank::compressed_bank& bank);

// Short module names in display order: q, k, v, o, gate, up, down ("_proj" names), then any others in
// alphabetical order. Input names as in bank_module::short_name.
std::vector<std::string> ordered_module_names(std::vector<std::string> names);

struct layer_module_grid {
    std::vector<int> layers;          // rows, ascending (-1 for modules without a layer number)
    std::vector<std::string> modules; // columns, in ordered_module_names order
    std::vector<double> mean;         // [layer row][module column] row-major; NaN where no module/adapter
    std::vector<int> count;           // [same]: the (adapter, module) errors averaged into the cell

    double at(std::size_t row, std::size_t col) const { return mean[row * modules.size() + col]; }
};

// Cell (layer, name): the mean over every bank module with that layer and short name and every adapter
// that has it of the adapter's error there.
layer_module_grid layer_module_errors(const bank::compressed_bank& bank);

} // namespace lorafleet::analysis
