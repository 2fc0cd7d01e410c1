// CUDA build of the device probe (see device_probe.hpp).
#include "kernels/device_probe.hpp"

#include "kernels/cuda_libraries.hpp"

#include <cuda_runtime_api.h>

namespace lorafleet::kernels {

cuda_probe_result probe_cuda_devices() {
    cuda_probe_result r;
    r.compiled = true;
    cudaRuntimeGetVersion(&r.runtime_version);
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        r.reason =
            std::string("CUDA runtime: ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
        cudaGetLastError(); // clear the sticky-free error state
        return r;
    }
    if (count == 0) {
        r.reason = "no CUDA device found";
        return r;
    }
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp p{};
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
        r.devices.push_back({i, p.name, static_cast<long long>(p.totalGlobalMem >> 20), p.major, p.minor});
    }
    r.available = !r.devices.empty();
    if (!r.available) r.reason = "CUDA devices present but none could be queried";
    // Compression and serving on the device both need cuBLAS and cuSOLVER: a device without them is not
    // usable. (Loaded only here, once a device exists, so a machine without a GPU never maps them.)
    if (r.available && !cuda_math_libraries().loaded) {
        r.available = false;
        r.reason = cuda_math_libraries().reason;
    }
    return r;
}

} // namespace lorafleet::kernels
