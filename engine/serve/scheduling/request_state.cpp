// request_state (see request_state.hpp). choice_after() + accept_token() follow generate()'s decode loop
// step by step: the same order of checks (and of sampler draws) is what makes the engine's output equal
// generate()'s.
#include "engine/serve/scheduling/request_state.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <string>

namespace lorafleet::serve {

namespace {
bool has_text(const Tokenizer& tokenizer, const std::vector<int>& prompt) {
    return std::any_of(prompt.begin(), prompt.end(), [&](int id) { return !tokenizer.is_special(id); });
}
} // namespace

request_state::request_state(std::uint64_t id, completion_request request, int slot, int capacity,
                             int context, int usable_vocab, const Tokenizer& tokenizer)
    : m_id(id), m_request(std::move(request)), m_slot(slot), m_capacity(capacity), m_context(context),
      m_usable_vocab(usable_vocab), m_tokenizer(&tokenizer), m_sampler(m_request.params.sampling),
      m_stops(m_request.params.stop),
      // The generated text continues the prompt's text, unless the prompt is only special tokens (BOS).
      m_stream(tokenizer, !has_text(tokenizer, m_request.prompt)) {
    m_result.prompt_tokens = prompt_size();
}

std::span<const int> request_state::next_tokens(int max_tokens) const {
    if (prefilling()) {
        const int n = std::min(max_tokens, prompt_size() - m_prefilled);
        return std::span<const int>(m_request.prompt).subspan(std::size_t(m_prefilled), std::size_t(n));
    }
    return std::span<const int>(&m_last, 1);
}

void request_state::mark_fed(int n) {
    if (prefilling()) {
        m_prefilled += n;
        m_position = m_prefilled;
    } else {
        ++m_position;
    }
}

void request_state::mark_scheduled(clock::time_point now) {
    if (!m_scheduled) m_scheduled = now;
}

void request_state::emit(const std::string& piece) {
    if (piece.empty()) return;
    m_result.text += piece;
    if (m_request.on_text) m_request.on_text(piece);
}

void request_state::close_text() {
    if (m_stops.stopped()) return;
    emit(m_stops.feed(m_stream.finish()));
    emit(m_stops.flush());
    if (m_stops.stopped()) m_result.reason = finish_reason::stop_string;
}

token_choice request_state::choice_after(int n) {
    token_choice c;
    if (prefilling() && m_prefilled + n < prompt_size()) return c; // a prompt chunk that is not the last
    if (generated() >= m_request.params.max_tokens) return c;      // accept_token ends without a pick
    const sampling_params& sp = m_sampler.params();
    c.wanted = true;
    c.temperature = sp.temperature;
    c.top_k = sp.top_k;
    c.top_p = sp.top_p;
    c.u = m_sampler.greedy() ? 0.0 : m_sampler.draw();
    return c;
}

bool request_state::accept_token(int token) {
    const generation_params& p = m_request.params;
    if (generated() >= p.max_tokens) { // max_tokens == 0: the prompt is all there is
        close_text();
        return m_done = true;
    }
    if (token < 0 || token >= m_usable_vocab)
        throw validation_error("sampling", token < 0 ? "no finite logit to choose from"
                                                     : "picked token " + std::to_string(token) +
                                                           " is outside the tokenizer's vocabulary");
    if (!m_first_token) m_first_token = clock::now();
    if (p.stop_at_eos && m_tokenizer->is_eos(token)) {
        m_result.reason = finish_reason::eos;
        close_text();
        return m_done = true;
    }
    m_result.tokens.push_back(token);
    emit(m_stops.feed(m_stream.push(token)));
    if (m_stops.stopped()) {
        m_result.reason = finish_reason::stop_string;
        return m_done = true;
    }
    if (generated() == p.max_tokens) {
        m_result.reason = finish_reason::max_tokens;
        close_text();
        return m_done = true;
    }
    if (m_position >= m_context) {
        m_result.reason = finish_reason::context_full;
        close_text();
        return m_done = true;
    }
    m_last = token;
    return false;
}

completion_result request_state::finish(completion_status status, const std::string& why) {
    const auto now = clock::now();
    m_done = true;
    completion_result r = m_result;
    r.status = status;
    r.error = why;
    auto secs = [&](clock::time_point t) { return std::chrono::duration<double>(t - m_submitted).count(); };
    r.total_s = secs(now);
    r.queue_s = m_scheduled ? secs(*m_scheduled) : r.total_s;
    r.ttft_s = m_first_token ? secs(*m_first_token) : r.total_s;
    return r;
}

} // namespace lorafleet::serve
