// read_prompt_set: see prompt_set.hpp.
#include "engine/quality/prompt_set.hpp"

#include "engine/core/error.hpp"
#include "engine/io/regular_file.hpp"

#include <string>
#include <string_view>

namespace lorafleet::quality {

std::vector<std::vector<int>> read_prompt_set(const std::filesystem::path& file, int count,
                                              const serve::Tokenizer& tokenizer) {
    if (count < 1) throw usage_error("prompts", "the prompt count must be at least 1");
    const std::string text = io::read_text_file(file, max_prompt_file_bytes, "prompts file");
    std::vector<std::vector<int>> out;
    std::string_view rest = text;
    while (int(out.size()) < count && !rest.empty()) {
        const auto end = rest.find('\n');
        std::string_view line = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string_view::npos) continue;
        auto ids = tokenizer.encode(std::string(line.substr(first)), true);
        if (!ids.empty()) out.push_back(std::move(ids));
    }
    if (out.empty())
        throw validation_error(path_string(file), "the prompts file holds no prompt with tokens");
    return out;
}

} // namespace lorafleet::quality
