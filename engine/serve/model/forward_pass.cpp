// ForwardPass on the CPU, and make_forward_pass choosing between it and the CUDA pass (see
// forward_pass.hpp). The CPU pass only adapts: it hands the provider to transformer as its AdapterDelta.
// The CUDA pass lives in the device layer (engine/backend/cuda/cuda_forward_pass.cpp).
#include "engine/serve/model/forward_pass.hpp"

#include "engine/backend/device_registry.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/sampler.hpp"

#include <algorithm>

namespace lorafleet::serve {

std::vector<int> ForwardPass::forward_tokens(kv_cache& cache, std::span<const sequence_step> batch,
                                             AdapterProvider* adapters, std::span<const token_choice> choices,
                                             int vocab_limit) {
    if (choices.size() != batch.size())
        throw usage_error("forward", "one token choice per sequence of the step is needed");
    const step_logits logits = forward(cache, batch, adapters);
    std::vector<int> tokens(batch.size(), -1);
    std::vector<int> ids;
    std::vector<double> prob;
    for (std::size_t b = 0; b < batch.size(); ++b) {
        const token_choice& c = choices[b];
        if (!c.wanted) continue;
        const auto row = logits.last(static_cast<int>(b));
        const auto limit = std::min(row.size(), static_cast<std::size_t>(std::max(vocab_limit, 0)));
        sampling_params p;
        p.temperature = c.temperature;
        p.top_k = c.top_k;
        p.top_p = c.top_p;
        try {
            tokens[b] = choose_token(p, row.first(limit), c.u, ids, prob);
        } catch (const validation_error&) {
            tokens[b] = -1; // no finite logit: the caller reports it for that request
        }
    }
    return tokens;
}

namespace {

class cpu_forward_pass final : public ForwardPass {
public:
    cpu_forward_pass(std::shared_ptr<const model_weights> w, int threads) : m_model(std::move(w), threads) {}
    std::string_view device() const override { return "cpu"; }
    kv_cache make_cache(std::uint64_t budget_bytes, int block_size) const override {
        return m_model.make_cache(budget_bytes, block_size);
    }
    step_logits forward(kv_cache& cache, std::span<const sequence_step> batch,
                        AdapterProvider* adapters) override {
        return m_model.forward(cache, batch, adapters);
    }

private:
    transformer m_model;
};

} // namespace

device_resolution resolve_device(device_choice device, const AdapterProvider* provider) {
    device_resolution out;
    if (device == device_choice::cpu) {
        out.note = "cpu";
        return out;
    }
    const backend::device_report& probe = backend::devices();
    const bool twin = provider == nullptr || provider->has_device_twin();
    if (device == device_choice::cuda) {
        if (!probe.available) throw backend_unavailable("--device cuda", probe.reason);
        if (!twin)
            throw unsupported_error("--device cuda", "the " + std::string(provider->mode()) +
                                                         " adapter provider has no CUDA twin");
        out.device = device_choice::cuda;
        out.note = "cuda";
    } else if (!probe.available) {
        out.note = "cpu (auto: no usable CUDA device: " + probe.reason + ")";
    } else if (!twin) {
        out.note = "cpu (auto: the " + std::string(provider->mode()) + " adapters have no CUDA twin)";
    } else {
        out.device = device_choice::cuda;
        out.note = "cuda (auto)";
    }
    return out;
}

forward_pass_choice make_forward_pass(device_choice device, std::shared_ptr<const model_weights> weights,
                                      int threads, AdapterProvider* provider) {
    const device_resolution r = resolve_device(device, provider);
    forward_pass_choice out;
    out.note = r.note;
    if (r.device == device_choice::cuda) {
        if (device == device_choice::cuda) {
            out.pass = make_cuda_forward_pass(std::move(weights), provider);
            return out;
        }
        try { // automatic: a device that refuses means the CPU
            out.pass = make_cuda_forward_pass(weights, provider);
            return out;
        } catch (const backend_unavailable& e) {
            out.note = std::string("cpu (auto: the CUDA device refused: ") + e.what() + ")";
        }
    }
    out.pass = std::make_unique<cpu_forward_pass>(std::move(weights), threads);
    return out;
}

} // namespace lorafleet::serve
