// generate() and stop_matcher (see generate.hpp). Sections: stop strings, then the generation loop.
#include "engine/serve/scheduling/generate.hpp"

#include "engine/core/error.hpp"
#include "engine/serve/tokenizer/decode_stream.hpp"

#include <algorithm>
#include <chrono>

namespace lorafleet::serve {

std::string_view finish_reason_name(finish_reason r) {
    switch (r) {
    case finish_reason::eos:
        return "eos";
    case finish_reason::stop_string:
        return "stop";
    case finish_reason::max_tokens:
        return "length";
    case finish_reason::context_full:
        return "context";
    }
    return "?";
}

// ---- Stop strings -----------------------------------------------------------------------------------------
stop_matcher::stop_matcher(std::vector<std::string> stops) : m_stops(std::move(stops)) {
    std::erase_if(m_stops, [](const std::string& s) { return s.empty(); });
}

std::string stop_matcher::feed(std::string_view text) {
    if (m_stopped) return {};
    m_held += text;
    // The earliest complete match ends the text.
    std::size_t cut = std::string::npos;
    for (const auto& s : m_stops)
        cut = std::min(cut, m_held.find(s));
    if (cut != std::string::npos) {
        m_stopped = true;
        std::string out = m_held.substr(0, cut);
        m_held.clear();
        return out;
    }
    // Keep the longest suffix that is a proper prefix of some stop string; emit the rest.
    std::size_t keep = 0;
    for (const auto& s : m_stops)
        for (std::size_t k = std::min(s.size() - 1, m_held.size()); k > keep; --k)
            if (m_held.compare(m_held.size() - k, k, s, 0, k) == 0) {
                keep = k;
                break;
            }
    std::string out = m_held.substr(0, m_held.size() - keep);
    m_held.erase(0, m_held.size() - keep);
    return out;
}

std::string stop_matcher::flush() {
    std::string out = m_stopped ? std::string() : std::move(m_held);
    m_held.clear();
    return out;
}

// ---- The loop
// -----------------------------------------------------------------------------------------------
generation_result generate(transformer& model, const Tokenizer& tokenizer, std::span<const int> prompt,
                           const generation_params& params,
                           const std::function<void(std::string_view)>& on_text, AdapterDelta* adapters) {
    using clock = std::chrono::steady_clock;
    if (prompt.empty()) throw usage_error("generate", "the prompt has no tokens (start from BOS)");
    if (params.max_tokens < 0) throw usage_error("generate", "max_tokens must be >= 0");
    if (params.prefill_chunk < 1) throw usage_error("generate", "prefill_chunk must be >= 1");
    const int context = model.weights().max_context();
    const int n_prompt = static_cast<int>(prompt.size());
    if (n_prompt > context)
        throw usage_error("generate", "the prompt has " + std::to_string(n_prompt) +
                                          " tokens, more than the model's context of " +
                                          std::to_string(context));

    generation_result result;
    result.prompt_tokens = n_prompt;
    // The last sampled token is never fed back, so the cache needs prompt + max_tokens - 1 positions.
    const int capacity = std::min(context, n_prompt + std::max(params.max_tokens - 1, 0));
    constexpr int block = 16;
    const int blocks = (std::max(capacity, 1) + block - 1) / block;
    kv_cache cache =
        model.make_cache(kv_cache::block_bytes(model.geometry(), block) * std::uint64_t(blocks), block);
    const int seq = 0;
    cache.add_sequence(seq);

    sampler pick(params.sampling);
    stop_matcher stops(params.stop);
    // The generated text continues the prompt's text, unless the prompt is only special tokens (BOS).
    const bool prompt_has_text =
        std::any_of(prompt.begin(), prompt.end(), [&](int id) { return !tokenizer.is_special(id); });
    decode_stream stream(tokenizer, !prompt_has_text);
    auto emit = [&](const std::string& piece) {
        if (piece.empty()) return;
        result.text += piece;
        if (on_text) on_text(piece);
    };

    // Prefill in chunks; the logits of the last chunk's last token give the first new token.
    const auto t0 = clock::now();
    step_logits logits;
    for (int begin = 0; begin < n_prompt; begin += params.prefill_chunk) {
        const int len = std::min(params.prefill_chunk, n_prompt - begin);
        const sequence_step step{
            seq, prompt.subspan(std::size_t(begin), std::size_t(len)), {}, params.adapter, false};
        logits = model.forward(cache, std::span(&step, 1), adapters);
    }
    const auto t1 = clock::now();
    result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

    // Checkpoints often pad the embedding matrix past the tokenizer's vocabulary: never pick a padding row.
    const std::size_t usable_vocab =
        std::size_t(std::min(model.geometry().vocab_size, tokenizer.vocab_size()));
    int position = n_prompt;
    for (int i = 0; i < params.max_tokens; ++i) {
        const int token = pick.sample(logits.last(0).first(usable_vocab));
        if (params.stop_at_eos && tokenizer.is_eos(token)) {
            result.reason = finish_reason::eos;
            break;
        }
        result.tokens.push_back(token);
        emit(stops.feed(stream.push(token)));
        if (stops.stopped()) {
            result.reason = finish_reason::stop_string;
            break;
        }
        if (i + 1 == params.max_tokens) break;
        if (position >= context) {
            result.reason = finish_reason::context_full;
            break;
        }
        const sequence_step step{seq, std::span(&token, 1), {}, params.adapter, false};
        logits = model.forward(cache, std::span(&step, 1), adapters);
        ++position;
        ++result.decode_steps;
    }
    if (!stops.stopped()) {
        emit(stops.feed(stream.finish()));
        emit(stops.flush());
        if (stops.stopped()) result.reason = finish_reason::stop_string;
    }
    result.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
    return result;
}

} // namespace lorafleet::serve
