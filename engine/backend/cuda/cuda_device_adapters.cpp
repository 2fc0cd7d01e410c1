// The two device twins (see cuda_device_adapters.hpp) and the factories device_twin_factories.hpp
// declares.
#include "engine/backend/cuda/cuda_device_adapters.hpp"
#include "engine/backend/device_twin_factories.hpp"

#include "engine/backend/cuda/cuda_bank.hpp"
#include "engine/backend/cuda/cuda_lora_cache.hpp"
#include "engine/backend/cuda/cuda_transformer.hpp"
#include "engine/core/error.hpp"
#include "engine/io/fleet.hpp"

namespace lorafleet::backend {

namespace {

class bank_twin final : public cuda_device_adapters {
public:
    explicit bank_twin(std::unique_ptr<kernels::device_bank> bank) : m_bank(std::move(bank)) {}
    std::size_t prepare(std::span<const int> slots) override { return slots.size(); } // all resident
    device_adapter_counters counters() const override { return {}; }
    kernels::device_adapters* kernel_adapters() override { return m_bank.get(); }

private:
    std::unique_ptr<kernels::device_bank> m_bank;
};

class lora_cache_twin final : public cuda_device_adapters {
public:
    lora_cache_twin(const io::model_geometry& base, io::fleet adapters, std::uint64_t cache_bytes)
        : m_cache(base, std::move(adapters), cache_bytes, serve::serving_device_precision()) {}
    std::size_t prepare(std::span<const int> slots) override { return m_cache.prepare(slots); }
    device_adapter_counters counters() const override {
        return {m_cache.page_bytes() * std::uint64_t(m_cache.pages()), m_cache.hits(), m_cache.misses()};
    }
    kernels::device_adapters* kernel_adapters() override { return m_cache.device(); }

private:
    serve::cuda_lora_cache m_cache;
};

} // namespace

kernels::device_adapters* kernel_view(device_adapters* a) {
    if (a == nullptr) return nullptr;
    auto* c = dynamic_cast<cuda_device_adapters*>(a);
    if (c == nullptr)
        throw usage_error("cuda forward", "the device adapters were not made by the CUDA backend");
    return c->kernel_adapters();
}

std::unique_ptr<device_adapters> upload_bank_adapters(const bank::compressed_bank& shape,
                                                      const std::vector<std::vector<float>>& cores,
                                                      const std::vector<int>& slot_cluster,
                                                      const io::model_geometry& base,
                                                      const std::string& where) {
    return std::make_unique<bank_twin>(
        serve::upload_bank(shape, cores, slot_cluster, base, where, serve::serving_device_precision()));
}

std::unique_ptr<device_adapters> make_device_lora_cache(const io::model_geometry& base, io::fleet adapters,
                                                        std::uint64_t cache_bytes) {
    return std::make_unique<lora_cache_twin>(base, std::move(adapters), cache_bytes);
}

} // namespace lorafleet::backend
