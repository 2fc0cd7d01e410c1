// Backend selection (see backend_registry.hpp). The CUDA backend plugs in here when it exists.
#include "engine/compress/backend_registry.hpp"

#include "engine/compress/cpu_backend.hpp"
#include "engine/core/error.hpp"

#include <string>

namespace lorafleet::compress {

std::unique_ptr<CompressBackend> make_compress_backend(std::string_view name, int threads) {
    if (name == "cpu" || name == "auto") return std::make_unique<CpuBackend>(cpu_backend_options{threads});
    if (name == "cuda") throw backend_unavailable("cuda", "not built yet");
    throw usage_error("backend",
                      "unknown compression backend '" + std::string(name) + "' (cpu, cuda or auto)");
}

} // namespace lorafleet::compress
