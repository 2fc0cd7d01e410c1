// ForwardPass on the CPU and on CUDA, and make_forward_pass choosing between them (see forward_pass.hpp).
// The two implementations only adapt: the CPU one hands the provider to transformer as its AdapterDelta,
// the CUDA one hands cuda_transformer the provider's device twin.
#include "engine/serve/model/forward_pass.hpp"

#include "engine/backend/cuda/cuda_transformer.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/model/transformer.hpp"
#include "engine/serve/scheduling/sampler.hpp"
#include "kernels/device_probe.hpp"

#include <algorithm>

namespace lorafleet::serve {

device_choice parse_device_choice(std::string_view text) {
    if (text == "cpu") return device_choice::cpu;
    if (text == "cuda") return device_choice::cuda;
    if (text == "auto") return device_choice::automatic;
    throw usage_error("--device", "unknown device '" + std::string(text) + "' (use cpu, cuda or auto)");
}

std::string_view device_choice_name(device_choice d) {
    switch (d) {
    case device_choice::cpu:
        return "cpu";
    case device_choice::cuda:
        return "cuda";
    case device_choice::automatic:
        return "auto";
    }
    return "cpu";
}

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

class cuda_forward_pass final : public ForwardPass {
public:
    cuda_forward_pass(std::shared_ptr<const model_weights> w, AdapterProvider* provider)
        : m_model(std::move(w)), m_provider(provider) {
        if (m_provider) m_twin = m_provider->device_twin(); // uploads now: fail at construction
    }
    std::string_view device() const override { return "cuda"; }
    kv_cache make_cache(std::uint64_t budget_bytes, int block_size) const override {
        return m_model.make_cache(budget_bytes, block_size);
    }
    step_logits forward(kv_cache& cache, std::span<const sequence_step> batch,
                        AdapterProvider* adapters) override {
        if (adapters != m_provider)
            throw usage_error("cuda forward", "the adapter provider is not the one this pass was made for");
        return m_model.forward(cache, batch, adapters ? m_twin : nullptr);
    }
    std::vector<int> forward_tokens(kv_cache& cache, std::span<const sequence_step> batch,
                                    AdapterProvider* adapters, std::span<const token_choice> choices,
                                    int vocab_limit) override {
        if (adapters != m_provider)
            throw usage_error("cuda forward", "the adapter provider is not the one this pass was made for");
        return m_model.forward_tokens(cache, batch, adapters ? m_twin : nullptr, choices, vocab_limit);
    }

private:
    cuda_transformer m_model;
    AdapterProvider* m_provider = nullptr;
    kernels::device_adapters* m_twin = nullptr; // owned by the provider
};

} // namespace

device_resolution resolve_device(device_choice device, const AdapterProvider* provider) {
    device_resolution out;
    if (device == device_choice::cpu) {
        out.note = "cpu";
        return out;
    }
    const kernels::cuda_probe_result probe = kernels::probe_cuda_devices();
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
            out.pass = std::make_unique<cuda_forward_pass>(std::move(weights), provider);
            return out;
        }
        try { // automatic: a device that refuses means the CPU
            out.pass = std::make_unique<cuda_forward_pass>(weights, provider);
            return out;
        } catch (const backend_unavailable& e) {
            out.note = std::string("cpu (auto: the CUDA device refused: ") + e.what() + ")";
        }
    }
    out.pass = std::make_unique<cpu_forward_pass>(std::move(weights), threads);
    return out;
}

} // namespace lorafleet::serve
