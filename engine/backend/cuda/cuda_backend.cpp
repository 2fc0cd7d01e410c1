// make_cuda_backend (see cuda_backend.hpp): probe, then OpsBackend over CudaLinalgOps.
#include "engine/backend/cuda/cuda_backend.hpp"

#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/compress/ops_backend.hpp"
#include "engine/core/error.hpp"
#include "kernels/device_probe.hpp"

namespace lorafleet::compress {

bool cuda_backend_usable(std::string* reason) {
    const auto probe = kernels::probe_cuda_devices();
    if (reason != nullptr) *reason = probe.available ? std::string() : probe.reason;
    return probe.available;
}

std::unique_ptr<CompressBackend> make_cuda_backend(const cuda_backend_options& options) {
    const auto probe = kernels::probe_cuda_devices();
    if (!probe.available) throw backend_unavailable("cuda", probe.reason);
    if (options.device < 0 || options.device >= static_cast<int>(probe.devices.size()))
        throw usage_error("cuda", "device " + std::to_string(options.device) + " does not exist (" +
                                      std::to_string(probe.devices.size()) + " found)");
    auto ops = std::make_unique<CudaLinalgOps>(options.memory_budget_mb << 20, options.device);
    return std::make_unique<OpsBackend>("cuda", std::move(ops));
}

} // namespace lorafleet::compress
