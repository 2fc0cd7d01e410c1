// A byte-level BPE tokenizer made up for a synthetic model (synthetic_model.hpp): HuggingFace
// `tokenizer.json` + `tokenizer_config.json` + `special_tokens_map.json` texts whose vocabulary has exactly
// the geometry's vocab_size entries, so any engine (ours, transformers) loads it beside random weights.
// Nothing is copied from a real tokenizer: the vocabulary is built from rules alone.
//
// Vocabulary (ids 0 .. vocab_size - 1, every id used once):
//   - two special added tokens, "<s>" (BOS) at the geometry's bos_token_id and "</s>" (EOS) at its
//     eos_token_id (1 and 2 when the geometry has none);
//   - the 256 byte characters of GPT-2's byte-level map (printable Latin-1 bytes as themselves, the other
//     68 bytes as U+0100, U+0101, ... in increasing order: space is 'Ġ', newline 'Ċ'), in byte order, so any
//     UTF-8 text encodes and decodes back exactly;
//   - merges learned, BPE-style, from a fixed list of lower-case candidate words: level 2 is every "xy" with
//     x in {Ġ, a..z} and y in a..z, level k + 1 every (level-k word, letter), up to level 4; within a level
//     the n-grams of frequent English letters come first (sum of the letters' ranks in
//     "etaoinsrhldcumfpgwybvkxjqz", ties in generation order). Each word is encoded with the merges so far
//     and new merges join its tokens until it is one token, so every word that made it into the
//     vocabulary encodes as one token ("Ġthe", "Ġand", ...). New pieces take, in creation order, the ids
//     the specials and bytes leave free, until the vocabulary is full.
// Pipeline: ByteLevel pre-tokenizer (GPT-2 regex, no prefix space), BPE without unk, ByteLevel decoder,
// BOS added in front of every text (TemplateProcessing and add_bos_token), EOS not added.
// Chat template: Mistral-Instruct's [INST] format for model_type "mistral", else TinyLlama-Chat's (Zephyr)
// <|user|> format; both are recognised by engine/api/chat_template.
// Pure functions of the geometry: the same geometry gives byte-identical texts.
#pragma once

#include "engine/io/hf_config.hpp"

#include <cstddef>
#include <string>

namespace lorafleet::synth {

struct synthetic_tokenizer_files {
    std::string tokenizer_json;
    std::string tokenizer_config_json;
    std::string special_tokens_map_json;
    int bos_id = 1;
    int eos_id = 2;
    std::size_t bytes() const {
        return tokenizer_json.size() + tokenizer_config_json.size() + special_tokens_map_json.size();
    }
};

// The largest vocabulary the rules above fill (specials + 256 bytes + levels 2..4 of merges).
int synthetic_tokenizer_max_vocab();

// The BOS / EOS ids the tokenizer of `g` uses: the geometry's, or 1 and 2 when it has none. usage_error
// when they are equal or outside the vocabulary, or vocab_size is below 258 (two specials and the 256
// bytes) or above synthetic_tokenizer_max_vocab().
std::pair<int, int> synthetic_special_ids(const io::model_geometry& g);

synthetic_tokenizer_files make_synthetic_tokenizer(const io::model_geometry& g);

} // namespace lorafleet::synth
