// request_state: one request inside the serving engine, from submit() to on_done: its prompt and how much
// of it is in the KV cache, its own sampler, stop matcher and streaming decoder, the tokens generated so
// far and its timestamps. accept() applies generate()'s rules to the logits after the request's last fed
// token (sample, EOS, stop strings, max_tokens, context end), so a request served in any batch produces
// exactly what generate() produces alone.
// Invariants: prefilled <= prompt size; once done() the request takes no more steps; the text handed to
// on_text, concatenated, equals result.text. Thread affinity: owned and used by the engine thread only
// (built by submit() before it is queued).
#pragma once

#include "engine/serve/model/forward_step.hpp"
#include "engine/serve/scheduling/generate.hpp"
#include "engine/serve/scheduling/sampler.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/tokenizer/decode_stream.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>

namespace lorafleet::serve {

class request_state {
public:
    using clock = std::chrono::steady_clock;

    // `slot`: the adapter slot resolved at submit (-1 = base). `capacity`: KV positions the request can
    // ever need (prompt + max_tokens - 1, at most the context), `context`: the model's max_context,
    // `usable_vocab`: logits columns a token may be picked from (checkpoint padding excluded).
    request_state(std::uint64_t id, completion_request request, int slot, int capacity, int context,
                  int usable_vocab, const Tokenizer& tokenizer);

    std::uint64_t id() const { return m_id; }
    int slot() const { return m_slot; }
    const std::string& adapter() const { return m_request.adapter; }
    int capacity() const { return m_capacity; }
    int prompt_size() const { return static_cast<int>(m_request.prompt.size()); }
    int prefilled() const { return m_prefilled; }
    bool prefilling() const { return m_prefilled < prompt_size(); }
    bool done() const { return m_done; }
    int generated() const { return static_cast<int>(m_result.tokens.size()); }

    // The tokens this request feeds in its next step: up to `max_tokens` prompt tokens while prefilling,
    // else the last sampled token. Valid until the next accept()/mark_fed().
    std::span<const int> next_tokens(int max_tokens) const;
    // The step that fed `n` tokens ran; the prompt part advances.
    void mark_fed(int n);
    // For a step that feeds `n` tokens: how the token after them is to be picked (token_choice). Not
    // wanted while the prompt is unfinished after the step, nor when the request ends without a pick
    // (max_tokens reached); otherwise the sampling parameters and, for a non-greedy pick, the uniform
    // drawn NOW from the request's sampler: the one draw a pick from the logits consumes, so a request
    // samples the same tokens whichever device picks them.
    token_choice choice_after(int n);
    // After mark_fed() of that step, when the token fed was the prompt's last or a decode token: takes
    // the token picked with choice_after() (-1: the row had no finite logit, a validation_error). Returns
    // true when the request finished (result().reason says why).
    bool accept_token(int token);

    void mark_scheduled(clock::time_point now); // first time in a step (queue_s)
    // Final result with the given status; for cancelled/failed requests `why` goes to result.error.
    completion_result finish(completion_status status, const std::string& why = {});
    const completion_request& request() const { return m_request; }

private:
    void emit(const std::string& piece);
    void close_text(); // flushes the decoder and the stop matcher at the end

    std::uint64_t m_id;
    completion_request m_request;
    int m_slot;
    int m_capacity;
    int m_context;
    int m_usable_vocab;
    const Tokenizer* m_tokenizer;
    int m_prefilled = 0;
    int m_position = 0; // tokens in the KV cache after the last step (generate()'s `position`)
    int m_last = -1;    // last sampled token, fed in the next decode step
    bool m_done = false;
    sampler m_sampler;
    stop_matcher m_stops;
    decode_stream m_stream;
    completion_result m_result;
    clock::time_point m_submitted = clock::now();
    std::optional<clock::time_point> m_scheduled, m_first_token;
};

} // namespace lorafleet::serve
