// Backend selection (see backend_registry.hpp).
#include "engine/compress/backend_registry.hpp"

#include "engine/backend/cuda/cuda_backend.hpp"
#include "engine/compress/cpu_backend.hpp"
#include "engine/core/error.hpp"

#include <string>

namespace lorafleet::compress {

std::unique_ptr<CompressBackend> make_compress_backend(std::string_view name, int threads,
                                                       std::size_t gpu_memory_mb) {
    if (name == "cpu") return std::make_unique<CpuBackend>(cpu_backend_options{threads});
    if (name == "cuda") return make_cuda_backend(cuda_backend_options{gpu_memory_mb, 0});
    if (name == "auto") {
        if (cuda_backend_usable()) return make_cuda_backend(cuda_backend_options{gpu_memory_mb, 0});
        return std::make_unique<CpuBackend>(cpu_backend_options{threads});
    }
    throw usage_error("backend",
                      "unknown compression backend '" + std::string(name) + "' (cpu, cuda or auto)");
}

} // namespace lorafleet::compress
