// Error report of a bank as CSV or JSON (see error_report.hpp).
#include "ui/export/error_report.hpp"

#include "engine/io/atomic_file.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

namespace lorafleet::ui {

namespace {

std::string csvField(const std::string& s) {
    if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
    std::string out = "\"";
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + '"';
}

std::string number(double v) {
    if (std::isnan(v)) return {};
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return buf;
}

nlohmann::json jsonNumber(double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

} // namespace

std::string errorReportCsv(const bank::compressed_bank& bank) {
    std::string out = "name,cluster,mean_error";
    for (const auto& m : bank.modules)
        out += ',' + csvField(m.path);
    out += '\n';
    for (const auto& a : bank.adapters) {
        out += csvField(a.name) + ',' + std::to_string(a.cluster) + ',' + number(a.mean_error());
        for (std::size_t m = 0; m < bank.modules.size(); ++m)
            out += ',' + (m < a.errors.size() ? number(a.errors[m]) : std::string());
        out += '\n';
    }
    return out;
}

std::string errorReportJson(const bank::compressed_bank& bank) {
    nlohmann::json j{{"format", "lorafleet-error-report"},
                     {"version", 1},
                     {"method", compress::to_string(bank.kind)},
                     {"rank", bank.rank},
                     {"clusters", bank.clusters},
                     {"mean_error", jsonNumber(bank.mean_error())},
                     {"max_error", jsonNumber(bank.max_error())}};
    j["modules"] = nlohmann::json::array();
    for (const auto& m : bank.modules)
        j["modules"].push_back(m.path);
    j["adapters"] = nlohmann::json::array();
    for (const auto& a : bank.adapters) {
        nlohmann::json errors = nlohmann::json::object();
        for (std::size_t m = 0; m < bank.modules.size(); ++m)
            errors[bank.modules[m].path] =
                m < a.errors.size() ? jsonNumber(a.errors[m]) : nlohmann::json(nullptr);
        j["adapters"].push_back({{"name", a.name},
                                 {"cluster", a.cluster},
                                 {"mean_error", jsonNumber(a.mean_error())},
                                 {"errors", errors}});
    }
    // max_digits10 round trip: nlohmann writes doubles with 17 significant digits.
    return j.dump(2) + "\n";
}

ReportFormat reportFormatFor(const std::filesystem::path& path) {
    std::string ext = path.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return char(std::tolower(c)); });
    return ext == ".json" ? ReportFormat::Json : ReportFormat::Csv;
}

void writeErrorReport(const bank::compressed_bank& bank, const std::filesystem::path& path) {
    io::write_file_atomic(path, reportFormatFor(path) == ReportFormat::Json ? errorReportJson(bank)
                                                                            : errorReportCsv(bank));
}

} // namespace lorafleet::ui
