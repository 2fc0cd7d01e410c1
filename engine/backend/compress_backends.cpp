// Compression backend selection (see compress_backends.hpp).
#include "engine/backend/compress_backends.hpp"

#include "engine/backend/device_registry.hpp"
#include "engine/compress/cpu_backend.hpp"

namespace lorafleet::backend {

std::unique_ptr<compress::CompressBackend> make_compress_backend(device_choice device, int threads,
                                                                 std::size_t gpu_memory_mb) {
    const auto cpu = [&] {
        return std::make_unique<compress::CpuBackend>(compress::cpu_backend_options{threads});
    };
    switch (device) {
    case device_choice::cpu:
        return cpu();
    case device_choice::cuda:
        return make_cuda_backend(cuda_backend_options{gpu_memory_mb, 0});
    case device_choice::automatic:
        if (cuda_backend_usable()) return make_cuda_backend(cuda_backend_options{gpu_memory_mb, 0});
        return cpu();
    }
    return cpu();
}

std::unique_ptr<compress::CompressBackend> make_compress_backend(std::string_view name, int threads,
                                                                 std::size_t gpu_memory_mb) {
    return make_compress_backend(parse_device_choice(name, "--device"), threads, gpu_memory_mb);
}

bool cuda_backend_usable(std::string* reason) {
    const device_report& r = devices();
    if (reason != nullptr) *reason = r.available ? std::string() : r.reason;
    return r.available;
}

} // namespace lorafleet::backend
