// Single-sequence text generation on top of the batched forward pass: prefill the prompt (in chunks),
// then decode one token per step, sampling with `sampler`, streaming complete UTF-8 text, and stopping at
// EOS, a stop string, max_tokens or the end of the model's context. The continuous-batching scheduler
// (many sequences per step) builds on the same transformer::forward; this is the simple path the CLI
// and tests use.
// Invariants: the text handed to on_text, concatenated, equals result.text; it never contains a stop
// string or any text after one (text that could be the start of a stop string is held back until it
// cannot); EOS is not part of the text or of result.tokens.
#pragma once

#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/sampler.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

struct generation_params {
    int max_tokens = 128;
    sampling_params sampling;
    std::vector<std::string> stop; // stop strings (empty strings are ignored)
    bool stop_at_eos = true;
    int prefill_chunk = 512; // prompt tokens per forward step (bounds scratch memory for long prompts)
    int adapter = -1;        // adapter slot for AdapterDelta, -1 = base model
};

enum class finish_reason { eos, stop_string, max_tokens, context_full };
std::string_view finish_reason_name(finish_reason r); // "eos", "stop", "length", "context"

struct generation_result {
    std::vector<int> tokens; // generated ids (EOS excluded)
    std::string text;        // their text, cut before a stop string
    finish_reason reason = finish_reason::max_tokens;
    int prompt_tokens = 0;
    double prefill_seconds = 0;
    double decode_seconds = 0; // time after the prefill: decode steps and sampling
    int decode_steps = 0;      // forward steps of one token each
};

// Holds back text that might begin a stop string; reports the text before the first match.
class stop_matcher {
public:
    explicit stop_matcher(std::vector<std::string> stops);
    std::string feed(std::string_view text); // text that is now safe to emit
    std::string flush();                     // the held-back rest (at the end of generation)
    bool stopped() const { return m_stopped; }

private:
    std::vector<std::string> m_stops;
    std::string m_held;
    bool m_stopped = false;
};

// `prompt` must not be empty (start from BOS for an empty text). A fresh KV cache sized for the prompt
// plus max_tokens is used and released. `adapters` is passed to every forward step.
generation_result generate(transformer& model, const Tokenizer& tokenizer, std::span<const int> prompt,
                           const generation_params& params,
                           const std::function<void(std::string_view)>& on_text = {},
                           AdapterDelta* adapters = nullptr);

} // namespace lorafleet::serve
