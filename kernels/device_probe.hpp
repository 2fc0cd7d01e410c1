// Which CUDA devices this process can use, asked through the CUDA runtime only. Any runtime error
// (no driver, insufficient driver, no device) means "no GPU" with the reason; it never aborts.
#pragma once

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

} // namespace lorafleet::kernels
