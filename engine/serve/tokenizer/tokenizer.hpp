// Tokenizers: text <-> token ids for the base model. One abstract interface, two implementations chosen by
// what the model folder holds: a HuggingFace `tokenizer.json` (BPE, SentencePiece-style or byte-level,
// implemented here) and a SentencePiece `tokenizer.model` (through libsentencepiece). BOS/EOS ids and whether
// BOS/EOS are added come from tokenizer_config.json, config.json and generation_config.json. Decoding
// contract: decode_bytes() returns raw bytes (byte-fallback and byte-level pieces may leave a character
// incomplete) and is concatenative: decode_bytes(a ++ b, s) == decode_bytes(a, s) ++ decode_bytes(b, false)
// whenever `a` produces some output, where `s` says whether the ids start the text (start-of-text rules
// such as dropping the space a Llama tokenizer prepends apply only then). That is what lets decode_stream
// decode one token at a time and still produce exactly decode()'s text.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

// Special-token settings gathered from the model folder's JSON files.
struct special_tokens {
    int bos = -1;                // -1: none
    std::vector<int> eos;        // generation stops at any of these
    std::optional<bool> add_bos; // tokenizer_config's add_bos_token; nullopt: the tokenizer's own rule
    std::optional<bool> add_eos; // tokenizer_config's add_eos_token
    std::optional<std::string> bos_text,
        eos_text; // token strings named by tokenizer_config, resolved on load
};

class Tokenizer {
public:
    virtual ~Tokenizer() = default;

    // Ids of `text`; with add_special, the tokens added around a single text (usually BOS) too.
    virtual std::vector<int> encode(std::string_view text, bool add_special = true) const = 0;
    // Raw bytes of `ids` (see the contract above); special tokens are left out when skip_special.
    // usage_error for an id outside the vocabulary.
    virtual std::string decode_bytes(std::span<const int> ids, bool at_text_start,
                                     bool skip_special = true) const = 0;
    // The text of `ids` as valid UTF-8 (incomplete or invalid bytes become U+FFFD).
    virtual std::string decode(std::span<const int> ids, bool skip_special = true) const;

    virtual int vocab_size() const = 0;
    virtual std::string token_text(int id) const = 0;                     // the piece as stored
    virtual std::optional<int> token_id(std::string_view text) const = 0; // exact piece lookup
    virtual bool is_special(int id) const = 0;                            // control / added special tokens

    int bos_id() const { return m_special.bos; }
    const std::vector<int>& eos_ids() const { return m_special.eos; }
    bool is_eos(int id) const;

protected:
    // Stores `s`: bos_text / eos_text, when they name a token of this vocabulary, override the config ids;
    // `own_bos` / `own_eos` (the tokenizer file's own, -1 if none) fill in what the configs leave unset.
    void set_special(special_tokens s, int own_bos, int own_eos);

    special_tokens m_special;
};

// Reads the special-token settings of a model folder (missing files are fine).
special_tokens read_special_tokens(const std::filesystem::path& model_dir);

// Loads the tokenizer of a model folder: tokenizer.json when present and supported, else tokenizer.model.
// io_error when there is neither; unsupported_error naming the feature for tokenizers we do not handle.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& model_dir);

// The two implementations, for callers that know which file they have. Special ids named by text in
// `special` are resolved against the tokenizer's vocabulary.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& tokenizer_json,
                                             special_tokens special);
std::unique_ptr<Tokenizer> parse_hf_tokenizer(std::string_view json_text, const std::string& where,
                                              special_tokens special);
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::filesystem::path& tokenizer_model,
                                                        special_tokens special);

} // namespace lorafleet::serve
