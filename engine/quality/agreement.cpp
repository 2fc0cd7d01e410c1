// evaluate_agreement (agreement.hpp): adapters in groups whose prompts fill one raw step; per group the
// raw prefill, the raw greedy decode (keeping each position's log-probabilities), then the compressed
// teacher-forced prefill in chunks, compared row by row.
#include "engine/quality/agreement.hpp"

#include "engine/core/error.hpp"
#include "engine/core/sha256.hpp"
#include "engine/serve/scheduling/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lorafleet::quality {

namespace {

constexpr int block_size = 16;

// The raw distribution at one position: p = softmax(row) into `p` (float; the exponentials in float, their
// sum in double) and returns Σ p·log p over the stored p. validation_error when the row is not finite.
double raw_softmax(std::span<const float> row, float* p, const std::string& where) {
    float mx = -INFINITY;
    for (const float v : row)
        mx = std::max(mx, v);
    double sum = 0;
    for (std::size_t j = 0; j < row.size(); ++j) {
        p[j] = std::exp(row[j] - mx);
        sum += p[j];
    }
    const double lse = double(mx) + std::log(sum);
    if (!std::isfinite(lse)) throw validation_error(where, "the model produced logits that are not finite");
    const float inv = static_cast<float>(1.0 / sum);
    double p_log_p = 0;
    for (std::size_t j = 0; j < row.size(); ++j) {
        p[j] *= inv;
        p_log_p += double(p[j]) * (double(row[j]) - lse);
    }
    return p_log_p;
}

// KL(p || q) in nats for q = softmax(q_logits): Σ p log p − Σ p (x_q − lse_q), one exponential per entry.
double kl_divergence(const float* p, double p_log_p, std::span<const float> q_logits,
                     const std::string& where) {
    float mx = -INFINITY;
    for (const float v : q_logits)
        mx = std::max(mx, v);
    double sum = 0, dot = 0, mass = 0;
    for (std::size_t j = 0; j < q_logits.size(); ++j) {
        sum += std::exp(q_logits[j] - mx);
        dot += double(p[j]) * double(q_logits[j]);
        mass += p[j];
    }
    const double lse = double(mx) + std::log(sum);
    if (!std::isfinite(lse)) throw validation_error(where, "the model produced logits that are not finite");
    return std::max(p_log_p - (dot - lse * mass), 0.0); // rounding may leave a tiny negative when p == q
}

struct sequence_run {
    int adapter = 0;            // index into names
    int prompt = 0;             // index into prompts
    std::vector<int> generated; // raw greedy tokens (EOS included when generated), capacity max_tokens
    std::vector<float> p;       // [max_tokens, vocab] raw next-token probabilities at each generated position
    std::vector<double> p_log_p; // [max_tokens] Σ p log p of each position
};

} // namespace

std::string prompt_set_digest(std::span<const std::vector<int>> prompts, int max_tokens) {
    std::vector<std::byte> bytes;
    auto put = [&](std::int32_t v) {
        std::byte b[4];
        std::memcpy(b, &v, 4);
        bytes.insert(bytes.end(), b, b + 4);
    };
    put(max_tokens);
    put(static_cast<std::int32_t>(prompts.size()));
    for (const auto& p : prompts) {
        put(static_cast<std::int32_t>(p.size()));
        for (const int t : p)
            put(t);
    }
    return sha256_hex(bytes);
}

std::vector<adapter_agreement>
evaluate_agreement(serve::ForwardPass& raw_pass, serve::AdapterProvider& raw,
                   serve::ForwardPass& compressed_pass, serve::AdapterProvider& compressed,
                   std::span<const std::string> names, std::span<const std::vector<int>> prompts_in,
                   const serve::model_weights& weights, const agreement_options& options) {
    const std::string where = "evaluate";
    const int T = options.max_tokens;
    const int context = weights.max_context();
    if (T < 1) throw usage_error(where, "max_tokens must be at least 1");
    if (T >= context)
        throw usage_error(where, "max_tokens " + std::to_string(T) + " leaves no room for a prompt in the " +
                                     std::to_string(context) + "-token context");
    if (prompts_in.empty()) throw usage_error(where, "no prompts");
    if (options.batch_sequences < 1 || options.prefill_sequences < 1)
        throw usage_error(where, "batch_sequences and prefill_sequences must be at least 1");

    // Prompts cut to their last (context - T) tokens, so prompt + generated always fits.
    std::vector<std::vector<int>> prompts;
    for (const auto& p : prompts_in) {
        if (p.empty()) throw usage_error(where, "a prompt has no tokens");
        const std::size_t keep = std::min(p.size(), std::size_t(context - T));
        prompts.emplace_back(p.end() - std::ptrdiff_t(keep), p.end());
    }
    const int P = static_cast<int>(prompts.size());

    std::vector<int> raw_slot, comp_slot;
    for (const auto& name : names) {
        const int r = raw.find(name), c = compressed.find(name);
        if (r < 0) throw usage_error(name, "no raw adapter of this name (its PEFT folder was not found)");
        if (c < 0) throw usage_error(name, "the bank has no adapter of this name");
        raw_slot.push_back(r);
        comp_slot.push_back(c);
    }
    const int n = static_cast<int>(names.size());
    std::vector<adapter_agreement> out(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        out[std::size_t(i)].name = names[std::size_t(i)];
    if (n == 0) return out;

    // Caches for the largest group: every sequence holds its prompt and T tokens.
    const int group_max = std::max(1, options.batch_sequences / P);
    int blocks_per_adapter = 0;
    for (const auto& p : prompts)
        blocks_per_adapter += (int(p.size()) + T + block_size - 1) / block_size;
    const std::uint64_t block_bytes = serve::kv_cache::block_bytes(weights.geometry(), block_size);
    serve::kv_cache raw_cache = raw_pass.make_cache(
        block_bytes * std::uint64_t(blocks_per_adapter) * std::uint64_t(group_max), block_size);
    const int chunk = options.prefill_sequences;
    int chunk_blocks = 0;
    {
        // The longest `chunk` prompts bound what one compressed chunk needs.
        std::vector<int> blocks;
        for (const auto& p : prompts)
            blocks.push_back((int(p.size()) + T + block_size - 1) / block_size);
        std::sort(blocks.rbegin(), blocks.rend());
        for (int s = 0; s < std::min(chunk, group_max * P); ++s)
            chunk_blocks += blocks[std::size_t(s % P)];
    }
    serve::kv_cache comp_cache =
        compressed_pass.make_cache(block_bytes * std::uint64_t(chunk_blocks), block_size);

    int vocab = 0; // usable vocabulary, known after the first step
    std::vector<sequence_run> runs;
    std::vector<serve::sequence_step> batch;
    std::vector<int> batch_run; // run index of each batch entry

    for (int a0 = 0; a0 < n;) {
        // ---- The group: as many adapters as fill a step and fit the raw cache together.
        const int want = std::min(group_max, n - a0);
        const std::size_t fit = raw.prepare(std::span<const int>(raw_slot.data() + a0, std::size_t(want)));
        if (fit == 0)
            throw validation_error(names[std::size_t(a0)],
                                   "the raw adapter does not fit in the adapter cache");
        const int a1 = a0 + static_cast<int>(fit);

        // ---- Raw prefill: every (adapter, prompt) sequence of the group in one step.
        runs.clear();
        runs.reserve(std::size_t(a1 - a0) * std::size_t(P));
        batch.clear();
        batch_run.clear();
        for (int a = a0; a < a1; ++a)
            for (int p = 0; p < P; ++p) {
                sequence_run run;
                run.adapter = a;
                run.prompt = p;
                run.generated.reserve(std::size_t(T));
                runs.push_back(std::move(run));
            }
        for (std::size_t s = 0; s < runs.size(); ++s) {
            raw_cache.add_sequence(int(s));
            const auto& r = runs[s];
            batch.push_back(
                {int(s), prompts[std::size_t(r.prompt)], {}, raw_slot[std::size_t(r.adapter)], false});
            batch_run.push_back(int(s));
        }
        serve::step_logits logits = raw_pass.forward(raw_cache, batch, &raw);
        if (vocab == 0)
            vocab = options.vocab_limit > 0 ? std::min(options.vocab_limit, logits.vocab) : logits.vocab;

        // ---- Raw greedy decode, keeping each position's probabilities.
        for (int t = 0; t < T; ++t) {
            std::vector<serve::sequence_step> next;
            std::vector<int> next_run;
            for (std::size_t b = 0; b < batch_run.size(); ++b) {
                sequence_run& r = runs[std::size_t(batch_run[b])];
                const std::span<const float> row = logits.last(int(b)).first(std::size_t(vocab));
                if (r.p.empty()) r.p.resize(std::size_t(T) * std::size_t(vocab));
                r.p_log_p.push_back(raw_softmax(row, r.p.data() + std::size_t(t) * std::size_t(vocab),
                                                names[std::size_t(r.adapter)]));
                const int token = serve::greedy_token(row);
                r.generated.push_back(token);
                const bool eos =
                    std::find(options.eos.begin(), options.eos.end(), token) != options.eos.end();
                if (eos || t + 1 == T) continue;
                next.push_back({batch_run[b],
                                std::span<const int>(&r.generated.back(), 1),
                                {},
                                raw_slot[std::size_t(r.adapter)],
                                false});
                next_run.push_back(batch_run[b]);
            }
            if (next.empty()) break;
            batch = std::move(next);
            batch_run = std::move(next_run);
            logits = raw_pass.forward(raw_cache, batch, &raw);
        }
        for (std::size_t s = 0; s < runs.size(); ++s)
            raw_cache.free_sequence(int(s));

        // ---- Compressed, teacher-forced on the raw tokens: prompt + generated[0 .. len-2] in one prefill
        // per chunk of sequences, a logits row for every position.
        const std::size_t comp_fit =
            compressed.prepare(std::span<const int>(comp_slot.data() + a0, std::size_t(a1 - a0)));
        if (comp_fit != std::size_t(a1 - a0))
            throw validation_error(names[std::size_t(a0 + int(comp_fit))],
                                   "the compressed adapter could not be made resident");
        std::vector<std::vector<int>> fed(runs.size());
        for (std::size_t c0 = 0; c0 < runs.size(); c0 += std::size_t(chunk)) {
            const std::size_t c1 = std::min(runs.size(), c0 + std::size_t(chunk));
            batch.clear();
            for (std::size_t s = c0; s < c1; ++s) {
                const auto& r = runs[s];
                auto& f = fed[s];
                f = prompts[std::size_t(r.prompt)];
                f.insert(f.end(), r.generated.begin(), r.generated.end() - 1);
                comp_cache.add_sequence(int(s));
                batch.push_back({int(s), f, {}, comp_slot[std::size_t(r.adapter)], true});
            }
            const serve::step_logits q = compressed_pass.forward(comp_cache, batch, &compressed);
            for (std::size_t s = c0; s < c1; ++s) {
                const auto& r = runs[s];
                auto& acc = out[std::size_t(r.adapter)].quality;
                const int b = int(s - c0);
                const int first =
                    q.first_row[std::size_t(b)] + int(prompts[std::size_t(r.prompt)].size()) - 1;
                const int len = int(r.generated.size());
                int diverged = -1;
                for (int k = 0; k < len; ++k) {
                    const std::span<const float> row = q.row(first + k).first(std::size_t(vocab));
                    const bool same = serve::greedy_token(row) == r.generated[std::size_t(k)];
                    if (same)
                        ++acc.agreeing_tokens;
                    else if (diverged < 0)
                        diverged = k;
                    acc.mean_kl +=
                        kl_divergence(r.p.data() + std::size_t(k) * std::size_t(vocab),
                                      r.p_log_p[std::size_t(k)], row, names[std::size_t(r.adapter)]);
                }
                acc.tokens += len;
                ++acc.prompts;
                if (diverged < 0) ++acc.exact_matches;
                if (diverged >= 0 && (acc.first_divergence < 0 || diverged < acc.first_divergence))
                    acc.first_divergence = diverged;
                acc.mean_first_divergence += diverged < 0 ? len : diverged; // summed; divided below
                comp_cache.free_sequence(int(s));
            }
        }
        for (int a = a0; a < a1; ++a) {
            auto& acc = out[std::size_t(a)].quality;
            if (acc.tokens > 0) acc.mean_kl /= acc.tokens;
            if (acc.prompts > 0) acc.mean_first_divergence /= acc.prompts;
        }
        a0 = a1;
        if (options.progress && !options.progress(a0, n)) throw cancelled_error(where, "cancelled");
    }
    return out;
}

} // namespace lorafleet::quality
