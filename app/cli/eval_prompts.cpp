// read_eval_prompts: see eval_prompts.hpp.
#include "app/cli/eval_prompts.hpp"

#include "engine/core/error.hpp"
#include "engine/io/bundled_resources.hpp"
#include "engine/quality/prompt_set.hpp"

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
    return quality::read_prompt_set(given ? *given : bundled_sonnets(), count, tokenizer);
}

} // namespace lorafleet::cli
