// `lorafleet-cli inspect PATH... [--json] [--base CONFIG_OR_PRESET]`: loads and validates every PEFT
// adapter found under the given paths and prints one summary per adapter (an aligned table, or a JSON
// array). An adapter that fails to load costs one line on stderr and exit code 1 at the end; the
// others are still listed. Only summaries are kept, so each adapter's mapping is released right away.
#include "app/cli/args.hpp"
#include "app/cli/commands.hpp"
#include "engine/core/error.hpp"
#include "engine/io/adapter_discovery.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/io/peft_adapter.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <new>
#include <optional>
#include <sstream>

namespace lorafleet::cli {
namespace {

struct adapter_row {
    std::string name;
    std::string path;
    int rank = 0; // max r over modules
    double alpha = 0.0;
    bool use_rslora = false;
    std::vector<std::string> modules; // short names, canonical order
    int module_count = 0;
    int layers = 0;
    std::int64_t parameters = 0;
    std::string dtype; // "F32", or "mixed"
    std::uint64_t weight_bytes = 0;
    std::string base_model;
    std::string task_type;
    std::vector<std::string> warnings;
};

adapter_row summarize(const io::peft_adapter& a) {
    adapter_row r;
    r.name = a.name;
    r.path = a.dir.string();
    r.rank = a.max_rank();
    r.alpha = a.config.lora_alpha;
    r.use_rslora = a.config.use_rslora;
    r.modules = a.module_names();
    r.module_count = int(a.modules.size());
    r.layers = a.layer_count();
    r.parameters = a.parameter_count();
    const auto t = a.weight_dtype();
    r.dtype = t ? std::string(io::dtype_name(*t)) : "mixed";
    r.weight_bytes = a.weight_bytes();
    r.base_model = a.config.base_model_name_or_path;
    r.task_type = a.config.task_type;
    r.warnings = a.warnings;
    return r;
}

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    std::replace(s.begin(), s.end(), '\r', ' ');
    return s;
}

// "lorafleet-cli inspect: error: <path>: <reason>", without repeating the path when the reason has it.
void report_failure(const std::string& path, const std::string& reason) {
    const std::string what = one_line(reason);
    std::cerr << "lorafleet-cli inspect: error: " << (what.rfind(path, 0) == 0 ? what : path + ": " + what)
              << "\n";
}

std::string format_number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

std::string join(const std::vector<std::string>& items, const char* sep) {
    std::string out;
    for (const auto& s : items)
        out += (out.empty() ? "" : sep) + s;
    return out;
}

void print_table(const std::vector<adapter_row>& rows) {
    const std::vector<std::string> header{"NAME",   "RANK",  "ALPHA",      "MODULES", "LAYERS",
                                          "PARAMS", "DTYPE", "BASE MODEL", "WARNINGS"};
    const std::vector<bool> right{false, true, true, false, true, true, false, false, true};
    std::vector<std::vector<std::string>> cells;
    for (const auto& r : rows)
        cells.push_back({r.name, std::to_string(r.rank), format_number(r.alpha) + (r.use_rslora ? " rs" : ""),
                         join(r.modules, ","), std::to_string(r.layers), std::to_string(r.parameters),
                         r.dtype, r.base_model.empty() ? "-" : r.base_model,
                         std::to_string(r.warnings.size())});
    std::vector<std::size_t> width(header.size());
    for (std::size_t c = 0; c < header.size(); ++c) {
        width[c] = header[c].size();
        for (const auto& row : cells)
            width[c] = std::max(width[c], row[c].size());
    }
    auto print_row = [&](const std::vector<std::string>& row) {
        std::string line;
        for (std::size_t c = 0; c < row.size(); ++c) {
            const std::string pad(width[c] - row[c].size(), ' ');
            line += (c ? "  " : "") + (right[c] ? pad + row[c] : row[c] + (c + 1 < row.size() ? pad : ""));
        }
        std::cout << line << "\n";
    };
    print_row(header);
    for (const auto& row : cells)
        print_row(row);
    bool any = false;
    for (const auto& r : rows)
        for (const auto& w : r.warnings) {
            if (!any) std::cout << "\nwarnings:\n";
            any = true;
            std::cout << "  " << r.name << ": " << one_line(w) << "\n";
        }
}

void print_json(const std::vector<adapter_row>& rows) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array(); // keys in this order
    for (const auto& r : rows)
        out.push_back({{"name", r.name},
                       {"path", r.path},
                       {"rank", r.rank},
                       {"alpha", r.alpha},
                       {"use_rslora", r.use_rslora},
                       {"modules", r.modules},
                       {"module_count", r.module_count},
                       {"layers", r.layers},
                       {"parameters", r.parameters},
                       {"dtype", r.dtype},
                       {"weight_bytes", r.weight_bytes},
                       {"base_model", r.base_model},
                       {"task_type", r.task_type},
                       {"warnings", r.warnings}});
    std::cout << out.dump(2) << "\n";
}

int run_inspect(const std::vector<std::string>& args) {
    arg_parser p({"base"}, {"json"});
    p.parse(args);
    if (p.positionals().empty())
        throw usage_error("", "inspect needs at least one PATH (an adapter folder or a folder of adapters)");
    std::optional<io::model_geometry> base;
    if (auto b = p.get("base")) base = io::resolve_geometry(*b);
    io::peft_load_options options;
    options.base = base ? &*base : nullptr;

    bool failed = false;
    std::vector<adapter_row> rows;
    for (const auto& path : p.positionals()) {
        std::vector<std::filesystem::path> dirs;
        try {
            dirs = io::find_adapter_dirs(path);
        } catch (const std::exception& e) {
            report_failure(path, e.what());
            failed = true;
            continue;
        }
        for (const auto& dir : dirs) {
            try {
                rows.push_back(summarize(io::load_peft_adapter(dir, options)));
            } catch (const std::bad_alloc&) {
                report_failure(dir.string(), "out of memory");
                failed = true;
            } catch (const std::exception& e) {
                report_failure(dir.string(), e.what());
                failed = true;
            }
        }
    }
    if (p.has("json")) {
        print_json(rows);
    } else if (!rows.empty()) {
        print_table(rows);
    }
    return failed ? 1 : 0;
}

const command_registrar reg{
    {"inspect", "validate PEFT LoRA adapters and summarize them (rank, modules, parameters)",
     "usage: lorafleet-cli inspect PATH... [--json] [--base CONFIG_OR_PRESET]\n"
     "\n"
     "  PATH      an adapter folder (adapter_config.json + adapter_model.safetensors) or a folder\n"
     "            searched recursively for them\n"
     "  --json    print a JSON array, one object per adapter\n"
     "  --base    check every module against a base model: a preset (tinystories-656k, tinyllama-1.1b,\n"
     "            mistral-7b, llama-2-7b), a config.json or a model folder\n"
     "\n"
     "Adapters that fail to load are reported on stderr, one line each; exit code 1 if any failed.\n",
     &run_inspect}};

} // namespace
} // namespace lorafleet::cli
