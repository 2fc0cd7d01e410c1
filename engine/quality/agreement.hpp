// Agreement of compressed adapters with their raw originals (issue 18): for each adapter, the RAW adapter
// (its PEFT factors) generates greedily from every prompt, then the COMPRESSED adapter is teacher-forced
// on those outputs in one prefill, and the two are compared position by position: the same argmax
// (token agreement), the whole sequence equal (exact match: greedy generation with the compressed adapter
// would have produced exactly the raw text), the first position where they part, and KL(raw || compressed)
// of the next-token distributions (softmax of the logits at temperature 1, over the tokenizer's vocabulary).
// Batched: the prompts of several adapters run in one forward step per phase (raw prefill, each raw decode
// step, compressed prefill), each sequence with its own adapter slot, so a step mixes many adapters the
// way serving does. A raw generation stops at EOS (the EOS is compared too) or after max_tokens.
// Invariants: results do not depend on the batch composition (the forward pass is batch-invariant), so
// an adapter's raw tokens are exactly `generate --adapters ... --adapter NAME` greedy output; an adapter
// compared with an identical compressed form scores exact_match = token_agreement = 1 and mean_kl = 0.
// Threading: runs on the calling thread (the forward passes use their own workers); the providers and
// passes must not be used by anything else meanwhile.
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/model/forward_pass.hpp"
#include "engine/serve/model/model_weights.hpp"

#include <functional>
#include <span>
#include <string>
#include <vector>

namespace lorafleet::quality {

struct agreement_options {
    int max_tokens = 32;        // greedy tokens per prompt, >= 1
    int batch_sequences = 256;  // sequences (adapter x prompt) per raw step; at least one adapter's prompts
    int prefill_sequences = 64; // sequences per compressed teacher-forced prefill step
    std::vector<int> eos;       // generation stops at any of these (the EOS itself is compared)
    int vocab_limit = 0;        // argmax and KL over the first vocab_limit logits (0: all of them)
    // (adapters done, adapters in all) after each group; return false to cancel (cancelled_error).
    std::function<bool(int done, int total)> progress;
};

// One adapter's result (same order as the names given).
struct adapter_agreement {
    std::string name;
    bank::adapter_quality quality;
};

// Evaluates `names` (each known to both providers; usage_error otherwise). `raw_pass` runs `raw` and
// `compressed_pass` runs `compressed` (the same pass object may serve both on the CPU). `prompts` are
// token ids (BOS included as the tokenizer adds it), each non-empty; a prompt longer than the model's
// context leaves room for beside max_tokens is cut to its last tokens. `weights` is the model both passes
// run (for its geometry and context). Throws what the passes and providers throw (a raw
// adapter whose files fail is an error naming it), validation_error for a raw adapter that does not fit
// the raw provider's cache by itself.
std::vector<adapter_agreement>
evaluate_agreement(serve::ForwardPass& raw_pass, serve::AdapterProvider& raw,
                   serve::ForwardPass& compressed_pass, serve::AdapterProvider& compressed,
                   std::span<const std::string> names, std::span<const std::vector<int>> prompts,
                   const serve::model_weights& weights, const agreement_options& options);

// SHA-256 (hex) of the prompts' token ids, so stored results say which prompt set they were measured on.
std::string prompt_set_digest(std::span<const std::vector<int>> prompts, int max_tokens);

} // namespace lorafleet::quality
