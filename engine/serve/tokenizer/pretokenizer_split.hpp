// The regex pre-tokenizers of byte-level BPE tokenizers, as a dedicated matcher. HuggingFace tokenizers
// runs these patterns with Oniguruma (\p{L}, \p{N}, a lookahead, a case-insensitive group), which
// std::regex cannot express, so the patterns real models ship are recognised by their exact text and
// matched here with the same semantics (alternatives tried in order at each position, the first that
// matches wins; greedy quantifiers that back off as far as the rest of the alternative needs):
//   gpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//          (also what the ByteLevel pre-tokenizer uses when use_regex is true)
//   llama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//          \s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2  the llama3 pattern with \p{N} (single digits) instead of \p{N}{1,3}
// Any other pattern is not recognised (the caller refuses the tokenizer). \s is Unicode White_Space;
// (?i) folds case as Oniguruma does, so 'ſ' (U+017F, long s) matches 's'. Bytes that are not valid UTF-8
// count as U+FFFD (neither letter, number nor space). Pure functions; safe from any thread.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

enum class split_pattern { gpt2, llama3, qwen2 };

// The pattern whose regex text is exactly `regex`, if it is one of the three.
std::optional<split_pattern> recognise_split_pattern(std::string_view regex);

// `text` cut into pre-tokens with the Isolated behaviour: every match is a piece of its own, and so is
// any text between matches. The pieces are views into `text`, in order, non-empty, and concatenate to it.
std::vector<std::string_view> split_pretokens(split_pattern pattern, std::string_view text);

} // namespace lorafleet::serve
