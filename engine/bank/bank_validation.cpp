// The bank validation (see bank_validation.hpp): the in-memory rules here, the file rules in
// read_bank() (bank_format.cpp), which ends by calling check_bank().
#include "engine/bank/bank_validation.hpp"

#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/io/peft_adapter.hpp"

#include <cmath>
#include <set>

namespace lorafleet::bank {
namespace {

bool all_finite(const std::vector<float>& v) {
    for (float x : v)
        if (!std::isfinite(x)) return false;
    return true;
}

std::string shape_text(std::int64_t rows, std::int64_t cols) {
    return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

struct problem_list {
    std::vector<std::string> text;
    std::vector<bool> shape; // a shape or geometry disagreement (thrown as shape_mismatch)
    void push_back(std::string t, bool is_shape = false) {
        text.push_back(std::move(t));
        shape.push_back(is_shape);
    }
    bool empty() const { return text.empty(); }
};

void geometry_problems(const compressed_bank& bank, const io::model_geometry& g, const std::string& which,
                       problem_list& out) {
    for (const auto& mod : bank.modules) {
        const auto shape = g.linear_shape(mod.short_name);
        if (!shape) {
            out.push_back("module " + mod.path + " is not a decoder linear of " + which + " " + g.name, true);
            continue;
        }
        if (mod.layer < 0 || mod.layer >= g.num_layers)
            out.push_back("module " + mod.path + " is in layer " + std::to_string(mod.layer) + " but " +
                              which + " " + g.name + " has " + std::to_string(g.num_layers) + " layers",
                          true);
        if (shape->d_out != mod.d_out || shape->d_in != mod.d_in)
            out.push_back("module " + mod.path + " is " + shape_text(mod.d_out, mod.d_in) + " but " +
                              shape_text(shape->d_out, shape->d_in) + " in " + which + " " + g.name,
                          true);
    }
}

problem_list collect_problems(const compressed_bank& bank, const std::optional<io::model_geometry>& base) {
    problem_list out;
    try {
        bank.validate("");
    } catch (const shape_mismatch& e) {
        out.push_back(e.what(), true);
        return out; // the structure is broken: nothing below can be indexed safely
    } catch (const error& e) {
        out.push_back(e.what());
        return out;
    }
    std::set<std::string> paths;
    for (const auto& mod : bank.modules) {
        int layer = -1;
        if (const auto problem = io::module_path_problem(mod.path, 0, &layer); !problem.empty()) {
            out.push_back("module " + std::to_string(&mod - bank.modules.data()) + ": " + problem);
            continue;
        }
        if (layer != mod.layer)
            out.push_back("module " + mod.path + " records layer " + std::to_string(mod.layer) +
                          " but its name says " + std::to_string(layer));
        const auto dot = mod.path.rfind('.');
        if (mod.short_name.empty() || dot == std::string::npos || mod.path.substr(dot + 1) != mod.short_name)
            out.push_back("module " + mod.path + " records module name '" + mod.short_name +
                          "', which is not its last component");
        if (!paths.insert(mod.path).second) out.push_back("module " + mod.path + " appears twice");
    }
    for (const auto& a : bank.adapters)
        if (const auto problem = io::adapter_name_problem(a.name); !problem.empty()) out.push_back(problem);
    for (std::size_t m = 0; m < bank.modules.size(); ++m) {
        if (!all_finite(bank.cores[m]))
            out.push_back("module " + bank.modules[m].path + ": a core holds NaN or Inf");
        for (std::size_t c = 0; c < bank.bases[m].size(); ++c)
            if (!all_finite(bank.bases[m][c].u) || !all_finite(bank.bases[m][c].vt))
                out.push_back("module " + bank.modules[m].path + ", cluster " + std::to_string(c) +
                              ": the basis holds NaN or Inf");
    }
    if (bank.base) geometry_problems(bank, *bank.base, "the recorded base model", out);
    if (base) geometry_problems(bank, *base, "the base model", out);
    return out;
}

} // namespace

std::vector<std::string> bank_problems(const compressed_bank& bank,
                                       const std::optional<io::model_geometry>& base) {
    return collect_problems(bank, base).text;
}

void check_bank(const compressed_bank& bank, const std::string& where,
                const std::optional<io::model_geometry>& base) {
    const auto problems = collect_problems(bank, base);
    if (problems.empty()) return;
    if (problems.shape.front()) throw shape_mismatch(where, problems.text.front());
    throw validation_error(where, problems.text.front());
}

std::vector<std::string> validate_bank(const std::filesystem::path& dir,
                                       const std::optional<io::model_geometry>& base, bool verify_checksums) {
    compressed_bank bank;
    try {
        bank_read_options options;
        options.verify_checksums = verify_checksums;
        options.check = false; // all problems, not the first
        bank = read_bank(dir, options);
    } catch (const error& e) {
        return {e.what()};
    }
    return bank_problems(bank, base);
}

} // namespace lorafleet::bank
