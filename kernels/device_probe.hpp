// Which CUDA devices this process can use, asked through the CUDA runtime only. Any runtime error
// (no driver, insufficient driver, no device) means "no GPU" with the reason; it never aborts.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace lorafleet::kernels {

struct cuda_device_info {
    int index = 0;
    std::string name;
    long long memory_mb = 0;
    int cc_major = 0;
    int cc_minor = 0;
};

struct cuda_probe_result {
    bool compiled = false;  // false when this build has no CUDA backend
    bool available = false; // at least one usable device
    std::string reason;     // why not available ("" when available)
    int runtime_version = 0;
    std::vector<cuda_device_info> devices;
};

cuda_probe_result probe_cuda_devices();

// Free and total memory of device `index` right now (cudaMemGetInfo). Creates the device's primary context
// in this process on first use; the calling thread's current device is left as it was. ok is false, with
// the reason, on any runtime error (never aborts).
struct cuda_memory_info {
    bool ok = false;
    std::size_t free_bytes = 0;
    std::size_t total_bytes = 0;
    std::string reason; // why not ok
};
cuda_memory_info query_cuda_memory(int index);

} // namespace lorafleet::kernels
