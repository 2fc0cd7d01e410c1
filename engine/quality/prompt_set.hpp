// The prompt set of an agreement evaluation (`lorafleet-cli evaluate`, `compress --keep-raw-below-agreement`,
// the console's Quality tab): one prompt per non-blank line of a text file (leading blanks dropped, CR LF
// accepted), the first `count` that tokenize to something, as token ids with BOS as the tokenizer adds it.
// The CLI and the console read it through this one function, so their results share a prompt set.
// The file is read through io::read_text_file: a regular file of at most max_prompt_file_bytes (a FIFO, a
// device or a huge file is refused at once, never read). Any thread.
#pragma once

#include "engine/serve/tokenizer/tokenizer.hpp"

#include <cstdint>
#include <filesystem>
#include <vector>

namespace lorafleet::quality {

constexpr std::uint64_t max_prompt_file_bytes = 16ull << 20;

// Throws what io::read_text_file throws, validation_error when no line gives a prompt, usage_error when
// count < 1.
std::vector<std::vector<int>> read_prompt_set(const std::filesystem::path& file, int count,
                                              const serve::Tokenizer& tokenizer);

} // namespace lorafleet::quality
