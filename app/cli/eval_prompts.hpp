// The prompt set of `evaluate` and `compress --keep-raw-below-agreement`: one prompt per non-blank line
// of a file (default: the bundled sonnets, found as bench-serve finds them), the first `count`, as token
// ids with BOS as the tokenizer adds it.
#pragma once

#include "engine/serve/tokenizer/tokenizer.hpp"

#include <filesystem>
#include <optional>
#include <vector>

namespace lorafleet::cli {

// `file`, or the bundled sonnets when none is given (io_error when they cannot be found).
std::vector<std::vector<int>> read_eval_prompts(const std::optional<std::filesystem::path>& file, int count,
                                                const serve::Tokenizer& tokenizer);

} // namespace lorafleet::cli
