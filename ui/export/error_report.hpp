// The error report of a compressed bank, for spreadsheets and scripts: one row / object per adapter with
// its name, cluster, mean error and the error of every module (the squared relative Frobenius error
// ||dW - U S Vt||^2 / ||dW||^2 stored in the bank; empty / null where the adapter lacks the module).
//   CSV:  name,cluster,mean_error,<module path>...   (RFC 4180 quoting, values with 17 significant digits)
//   JSON: {"format": "lorafleet-error-report", "version": 1, "method", "rank", "clusters", "mean_error",
//          "max_error", "modules": [path...], "adapters": [{"name", "cluster", "mean_error",
//          "errors": {path: value | null}}]}
// Pure functions (no Qt), any thread; writing is atomic (engine/io/atomic_file.hpp).
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <filesystem>
#include <string>

namespace lorafleet::ui {

std::string errorReportCsv(const bank::compressed_bank& bank);
std::string errorReportJson(const bank::compressed_bank& bank);

enum class ReportFormat { Csv, Json };
// ".json" (any case) -> Json, anything else -> Csv.
ReportFormat reportFormatFor(const std::filesystem::path& path);
// Writes the report in the format its suffix names; io_error when the disk refuses (nothing changes).
void writeErrorReport(const bank::compressed_bank& bank, const std::filesystem::path& path);

} // namespace lorafleet::ui
