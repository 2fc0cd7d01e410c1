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

cuda_memory_info query_cuda_memory(int index) {
    cuda_memory_info m;
    auto failed = [&m](const char* what, cudaError_t err) {
        m.reason = std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")";
        cudaGetLastError();
        return m;
    };
    int previous = 0;
    cudaError_t err = cudaGetDevice(&previous);
    if (err != cudaSuccess) return failed("cudaGetDevice", err);
    if (index != previous && (err = cudaSetDevice(index)) != cudaSuccess) return failed("cudaSetDevice", err);
    err = cudaMemGetInfo(&m.free_bytes, &m.total_bytes);
    if (index != previous) cudaSetDevice(previous);
    if (err != cudaSuccess) return failed("cudaMemGetInfo", err);
    m.ok = true;
    return m;
}

} // namespace lorafleet::kernels
