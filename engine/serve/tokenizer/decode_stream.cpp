// decode_stream: see the header. A skipped special token neither produces text nor ends the start of the
// text (BOS before the first word must not disable the first word's start-of-text rule).
#include "engine/serve/tokenizer/decode_stream.hpp"

#include "engine/serve/tokenizer/utf8.hpp"

namespace lorafleet::serve {

std::string decode_stream::push(int id) {
    if (m_skip_special && m_tokenizer->is_special(id)) return {};
    const int ids[1] = {id};
    m_pending += m_tokenizer->decode_bytes(ids, m_at_start, m_skip_special);
    m_at_start = false;
    return take_complete_utf8(m_pending);
}

std::string decode_stream::finish() {
    std::string out = sanitize_utf8(m_pending);
    m_pending.clear();
    return out;
}

} // namespace lorafleet::serve
