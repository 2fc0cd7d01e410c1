// read_eval_prompts: see eval_prompts.hpp.
#include "app/cli/eval_prompts.hpp"

#include "engine/core/error.hpp"
#include "engine/io/bundled_resources.hpp"

#include <fstream>
#include <string>

namespace lorafleet::cli {

namespace fs = std::filesystem;

namespace {

// The bundled-resource lookup (engine/io/bundled_resources.hpp), as bench-serve and the console find them.
fs::path bundled_sonnets() {
    const auto found = io::find_resource(io::sonnets_relative);
    if (found.path) return *found.path;
    throw io_error("sonnets.txt", io::not_found_message("The bundled prompts", io::sonnets_relative, found) +
                                      "; or pass --prompts FILE");
}

} // namespace

std::vector<std::vector<int>> read_eval_prompts(const std::optional<fs::path>& given, int count,
                                                const serve::Tokenizer& tokenizer) {
    const fs::path file = given ? *given : bundled_sonnets();
    std::ifstream in(file);
    if (!in) throw io_error(path_string(file), "cannot open the prompts file");
    std::vector<std::vector<int>> out;
    std::string line;
    while (int(out.size()) < count && std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos) continue;
        auto ids = tokenizer.encode(line.substr(first), true);
        if (!ids.empty()) out.push_back(std::move(ids));
    }
    if (out.empty())
        throw validation_error(path_string(file), "the prompts file holds no prompt with tokens");
    return out;
}

} // namespace lorafleet::cli
