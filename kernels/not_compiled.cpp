// The kernels library when the build has no CUDA backend: every entry point reports "not compiled".
#include "kernels/device_probe.hpp"

namespace lorafleet::kernels {

cuda_probe_result probe_cuda_devices() {
    cuda_probe_result r;
    r.reason = "this build has no CUDA backend (configured with LORAFLEET_CUDA=OFF or nvcc not found)";
    return r;
}

cuda_memory_info query_cuda_memory(int) {
    cuda_memory_info m;
    m.reason = "this build has no CUDA backend";
    return m;
}

} // namespace lorafleet::kernels
