// The reassignment rule and the empty-cluster reseeding (see reassignment.hpp).
#include "engine/compress/reassignment.hpp"

#include "engine/core/error.hpp"

#include <cmath>
#include <string>

namespace lorafleet::compress {

namespace {

void check(std::span<const int> labels, const dmatrix& totals, std::span<const int> module_counts) {
    check_shape(totals.rows == static_cast<std::int64_t>(labels.size()) &&
                    module_counts.size() == labels.size(),
                "reassign",
                std::to_string(labels.size()) + " labels, " + std::to_string(totals.rows) +
                    " rows of totals, " + std::to_string(module_counts.size()) + " module counts");
    for (const int c : labels)
        check_shape(c >= 0 && c < totals.cols, "reassign",
                    "label " + std::to_string(c) + " outside " + std::to_string(totals.cols) + " clusters");
}

} // namespace

double reassignment_margin(double own, int modules) {
    return 1e-6 * std::abs(own) + 1e-5 * static_cast<double>(modules);
}

std::vector<int> reassign(std::span<const int> current, const dmatrix& totals,
                          std::span<const int> module_counts) {
    check(current, totals, module_counts);
    std::vector<int> next(current.begin(), current.end());
    const auto k = totals.cols;
    for (std::size_t i = 0; i < next.size(); ++i) {
        const auto row = static_cast<std::int64_t>(i);
        const int cur = current[i];
        double best = totals(row, 0);
        for (std::int64_t c = 1; c < k; ++c)
            best = std::min(best, totals(row, c));
        const double limit = best + reassignment_margin(totals(row, cur), module_counts[i]);
        if (totals(row, cur) <= limit) continue; // near-ties keep the current cluster
        for (std::int64_t c = 0; c < k; ++c)
            if (totals(row, c) <= limit) {
                next[i] = static_cast<int>(c);
                break;
            }
    }
    return next;
}

void reseed_empty_clusters(std::vector<int>& assignment, const dmatrix& totals,
                           std::span<const int> module_counts) {
    check(assignment, totals, module_counts);
    const auto k = static_cast<std::size_t>(totals.cols);
    const auto n = assignment.size();
    std::vector<int> size(k, 0);
    for (const int c : assignment)
        ++size[static_cast<std::size_t>(c)];
    for (std::size_t c = 0; c < k; ++c) {
        if (size[c] > 0) continue;
        double worst_total = -1.0;
        for (std::size_t i = 0; i < n; ++i)
            if (size[static_cast<std::size_t>(assignment[i])] >= 2)
                worst_total = std::max(worst_total, totals(static_cast<std::int64_t>(i), assignment[i]));
        if (worst_total < 0.0) return; // every cluster is a singleton
        std::size_t pick = n;
        for (std::size_t i = 0; i < n && pick == n; ++i) {
            if (size[static_cast<std::size_t>(assignment[i])] < 2) continue;
            const double t = totals(static_cast<std::int64_t>(i), assignment[i]);
            if (t >= worst_total - reassignment_margin(worst_total, module_counts[i])) pick = i;
        }
        --size[static_cast<std::size_t>(assignment[pick])];
        assignment[pick] = static_cast<int>(c);
        ++size[c];
    }
}

} // namespace lorafleet::compress
