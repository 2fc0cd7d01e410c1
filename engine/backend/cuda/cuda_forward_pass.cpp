// The CUDA ForwardPass (declared as make_cuda_forward_pass in serve/model/forward_pass.hpp): adapts
// cuda_transformer to the seam, handing it the provider's device twin in the kernels' view.
#include "engine/backend/cuda/cuda_device_adapters.hpp"
#include "engine/backend/cuda/cuda_transformer.hpp"
#include "engine/backend/device_registry.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/model/forward_pass.hpp"

namespace lorafleet::serve {

namespace {

class cuda_forward_pass final : public ForwardPass {
public:
    cuda_forward_pass(std::shared_ptr<const model_weights> w, AdapterProvider* provider)
        : m_model(std::move(w)), m_provider(provider) {
        if (m_provider) m_twin = backend::kernel_view(m_provider->device_twin()); // uploads now
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

    // The device's memory as the console's chart shows it: the weights and KV pools this pass allocated,
    // the provider's device twin, and the runtime's free / total (the rest is derived by the recorder).
    std::optional<device_memory_split> device_memory() const override {
        const auto& registry = backend::devices();
        if (registry.devices.empty()) return std::nullopt;
        const auto mem = backend::device_memory_now(registry.devices.front().index);
        if (!mem) return std::nullopt;
        device_memory_split d;
        d.device = registry.devices.front().name;
        d.weights = m_model.weight_bytes();
        d.kv_cache = m_model.kv_pool_bytes();
        d.adapters = m_twin ? m_twin->device_bytes() : 0;
        d.free = mem->free_bytes;
        d.total = mem->total_bytes;
        return d;
    }

private:
    cuda_transformer m_model;
    AdapterProvider* m_provider = nullptr;
    kernels::device_adapters* m_twin = nullptr; // owned by the provider
};

} // namespace

std::unique_ptr<ForwardPass> make_cuda_forward_pass(std::shared_ptr<const model_weights> weights,
                                                    AdapterProvider* provider) {
    return std::make_unique<cuda_forward_pass>(std::move(weights), provider);
}

} // namespace lorafleet::serve
