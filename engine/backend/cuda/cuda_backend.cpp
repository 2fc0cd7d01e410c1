// make_cuda_backend (declared in engine/backend/compress_backends.hpp): the device registry's answer, then
// OpsBackend (the algorithm shared with the host-tested path) over CudaLinalgOps.
#include "engine/backend/compress_backends.hpp"
#include "engine/backend/cuda/cuda_linalg_ops.hpp"
#include "engine/backend/device_registry.hpp"
#include "engine/compress/ops_backend.hpp"
#include "engine/core/error.hpp"

namespace lorafleet::backend {

std::unique_ptr<compress::CompressBackend> make_cuda_backend(const cuda_backend_options& options) {
    const device_report& r = devices();
    if (!r.available) throw backend_unavailable("cuda", r.reason);
    if (options.device < 0 || options.device >= static_cast<int>(r.devices.size()))
        throw usage_error("cuda", "device " + std::to_string(options.device) + " does not exist (" +
                                      std::to_string(r.devices.size()) + " found)");
    auto ops = std::make_unique<compress::CudaLinalgOps>(options.memory_budget_mb << 20, options.device);
    return std::make_unique<compress::OpsBackend>("cuda", std::move(ops));
}

} // namespace lorafleet::backend
