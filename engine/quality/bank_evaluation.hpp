// Evaluating a bank folder against its raw adapters (what `lorafleet-cli evaluate` and `compress
// --keep-raw-below-agreement` run): opens the compressed adapters from the bank and the raw ones from the
// bank's recorded source folders (or from given folders), runs evaluate_agreement (agreement.hpp) on the
// CPU or a device, and turns the result into the manifest's quality section; and choosing which adapters
// to serve raw (hybrid serving, hybrid_delta.hpp) from such a result.
// Threading: the calling thread; may take minutes (progress reports and cancels).
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/quality/agreement.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/model/forward_pass.hpp"
#include "engine/serve/model/model_weights.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lorafleet::quality {

struct bank_evaluation_options {
    std::vector<std::string> adapters;             // names to evaluate; empty: every adapter of the bank
    std::vector<std::filesystem::path> raw_paths;  // raw PEFT folders (named by folder); empty: the sources
    std::uint64_t raw_cache_bytes = 1024ull << 20; // float32 budget of the raw adapter cache
    serve::device_choice device = serve::device_choice::cpu;
    int threads = 0;             // forward-pass threads (0: hardware threads)
    agreement_options agreement; // max_tokens, batching, eos, vocab limit, progress
};

struct bank_evaluation {
    std::vector<adapter_agreement> results;    // in evaluation order
    std::vector<serve::adapter_info> adapters; // the bank's adapters (cluster, error, source), bank order
    std::string device;                        // "cpu" or "cuda"
    std::string device_note;                   // how the device was chosen
    bank::quality_section section;             // the results as the manifest stores them (only these)
};

// Evaluates the bank at `bank_dir` for the model `weights` on `prompts` (token ids). usage_error for a
// name the bank or the raw folders lack; io_error naming the adapter when its recorded source folder is gone
// ("pass the raw folders"); what read_bank, the providers and evaluate_agreement throw.
bank_evaluation evaluate_bank(const std::filesystem::path& bank_dir,
                              std::shared_ptr<const serve::model_weights> weights,
                              std::span<const std::vector<int>> prompts,
                              const bank_evaluation_options& options);

// A bank adapter's recorded source folder: as recorded when it exists, else relative to the bank folder's
// parent; io_error naming the adapter otherwise.
std::filesystem::path find_adapter_source(const std::filesystem::path& bank_dir, const std::string& name,
                                          const std::string& source);

// The quality section to store after an evaluation: `fresh` merged into `stored` when both were measured
// the same way (model, prompts, max_tokens, prompt set), else `fresh` alone.
bank::quality_section merge_quality(const std::optional<bank::quality_section>& stored,
                                    const bank::quality_section& fresh);

// Which adapters to serve raw: those whose token agreement is below `below_agreement` (when given), plus
// the `keep_raw` worst by token agreement (ties: larger mean KL first, then name). Sorted by name.
std::vector<std::string> choose_raw_adapters(const std::map<std::string, bank::adapter_quality>& quality,
                                             std::optional<double> below_agreement, int keep_raw);

} // namespace lorafleet::quality
