// Incremental detokenization for streaming output: feed generated ids one at a time and get back only
// complete UTF-8 text. A character split across byte-fallback or byte-level tokens is held back until its
// last byte arrives; bytes that can never form a character come out as U+FFFD at once. Concatenating every
// push() and finish() gives exactly Tokenizer::decode() of the same ids (the tokenizer's decode_bytes
// contract makes per-token decoding equal to whole-text decoding), except that trailing-strip rules of
// a tokenizer's decoder do not apply while streaming.
#pragma once

#include "engine/serve/tokenizer/tokenizer.hpp"

#include <string>

namespace lorafleet::serve {

class decode_stream {
public:
    // at_text_start: the ids begin the text (false when they continue a prompt that produced text).
    explicit decode_stream(const Tokenizer& tokenizer, bool at_text_start = true, bool skip_special = true)
        : m_tokenizer(&tokenizer), m_at_start(at_text_start), m_skip_special(skip_special) {}

    std::string push(int id); // the text this token completes (often empty for a partial character)
    std::string finish();     // what is still held back, incomplete bytes as U+FFFD
    std::size_t held_bytes() const { return m_pending.size(); }

private:
    const Tokenizer* m_tokenizer;
    bool m_at_start;
    bool m_skip_special;
    std::string m_pending; // an incomplete UTF-8 sequence (at most 3 bytes)
};

} // namespace lorafleet::serve
