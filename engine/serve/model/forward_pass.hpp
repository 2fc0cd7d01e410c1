// The seam between the serving engine and the device that runs the model: ForwardPass is one forward
// step over a paged kv_cache with an optional AdapterProvider, implemented on the CPU (transformer.hpp)
// and on a CUDA device (engine/backend/cuda/cuda_forward_pass.cpp over cuda_transformer, with the
// provider's device twin: AdapterProvider::device_twin). make_forward_pass turns an engine's device
// choice (backend/device_choice.hpp, the one vocabulary compression uses too) into one of them:
//   cpu  - always the CPU transformer;
//   cuda - the device, or backend_unavailable with the probe's reason (no CUDA backend built, no usable
//          device, device refused the weights) and unsupported_error when the provider has no device twin;
//   auto - cuda when the device registry (backend/device_registry.hpp) finds a usable device and the
//          provider (if any) has a device twin, else cpu; `note` says why.
// Both passes validate steps identically (step_layout.hpp). CPU results are bit-for-bit those of
// transformer::forward; CUDA results agree to float rounding. Not thread-safe: one forward() at a time.
#pragma once

#include "engine/backend/device_choice.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/metrics/metrics.hpp"
#include "engine/serve/model/forward_step.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "engine/serve/model/model_weights.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

// Serving speaks the backend's device vocabulary ("cpu", "cuda", "auto"; usage_error for anything else).
using backend::device_choice;
using backend::device_choice_name;
using backend::parse_device_choice;

class ForwardPass {
public:
    virtual ~ForwardPass() = default;
    virtual std::string_view device() const = 0; // "cpu" or "cuda"
    // A kv_cache with this model's geometry under `budget_bytes`.
    virtual kv_cache make_cache(std::uint64_t budget_bytes, int block_size = 16) const = 0;
    // As transformer::forward: validation, errors and cache updates. `adapters` is the provider the
    // pass was made for (or null for the base model only).
    virtual step_logits forward(kv_cache& cache, std::span<const sequence_step> batch,
                                AdapterProvider* adapters) = 0;
    // forward() and then the pick of each sequence's next token from its last row, restricted to the
    // first `vocab_limit` logits: choices[b] for sequence b (choices.size() == batch.size()). Returns one
    // token per sequence: -1 where the choice is not wanted or the row has no finite logit. The picks
    // equal sampler::sample's given the same uniform (kernels/sampling_row.hpp on a device). Default: on
    // the host, over forward()'s logits; a device pass picks where the logits are and returns only ids.
    virtual std::vector<int> forward_tokens(kv_cache& cache, std::span<const sequence_step> batch,
                                            AdapterProvider* adapters, std::span<const token_choice> choices,
                                            int vocab_limit);
    // The device's memory (weights, KV pools, adapters, free, total) while on a device; nullopt on the CPU.
    virtual std::optional<device_memory_split> device_memory() const { return std::nullopt; }
};

struct forward_pass_choice {
    std::unique_ptr<ForwardPass> pass;
    std::string note; // how the device was chosen, e.g. "auto: no usable CUDA device (...)"
};

// Which device `device` resolves to without building anything: cpu or cuda, and how it was chosen. cuda
// throws as make_forward_pass does; automatic never throws. (make_forward_pass may still fall back to cpu
// when a usable device then refuses the weights under automatic.)
struct device_resolution {
    device_choice device = device_choice::cpu; // cpu or cuda
    std::string note;
};
device_resolution resolve_device(device_choice device, const AdapterProvider* provider);

// `threads` is for the CPU pass (0 = hardware threads). For cuda, builds the provider's device twin now,
// so a device that refuses fails here rather than in the first step.
forward_pass_choice make_forward_pass(device_choice device, std::shared_ptr<const model_weights> weights,
                                      int threads, AdapterProvider* provider);

// The CUDA pass itself, defined by the device layer (engine/backend/cuda/cuda_forward_pass.cpp): uploads
// the weights and the provider's device twin now. backend_unavailable (or backend::device_error) when
// the build has no CUDA backend or the device refuses. Use make_forward_pass, which checks first.
std::unique_ptr<ForwardPass> make_cuda_forward_pass(std::shared_ptr<const model_weights> weights,
                                                    AdapterProvider* provider);

} // namespace lorafleet::serve
