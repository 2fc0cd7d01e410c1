// The devices this process can compute on, probed ONCE per process and cached: every front end (CLI
// `devices`, the console's About box, status bar and Compress panel) and every device choice (compression
// backends, serving's forward pass) reads the same answer. Only the CUDA runtime is asked (no driver
// library is linked); any runtime error (no driver, driver too old, no device, no cuBLAS / cuSOLVER) means
// "no usable GPU" with the reason, never an abort. Plain engine types: nothing here mentions kernels/.
// Thread safety: devices() may be called from any thread; the first call probes (the others wait for it),
// later calls return the same immutable object.
#pragma once

#include <string>
#include <vector>

namespace lorafleet::backend {

struct device_info {
    int index = 0;    // the CUDA device ordinal
    std::string name; // "NVIDIA H200"
    long long memory_mb = 0;
    int cc_major = 0; // compute capability
    int cc_minor = 0;
    bool usable = false; // compression and serving may use it
    std::string reason;  // why not usable ("" when usable)
};

struct device_report {
    bool compiled = false;   // false when this build has no CUDA backend
    bool available = false;  // at least one usable device
    std::string reason;      // why not available ("" when available)
    int runtime_version = 0; // CUDA runtime, e.g. 12080 for 12.8 (0 when not compiled)
    std::vector<device_info> devices;
};

// The cached report (probes on the first call).
const device_report& devices();

// The probe itself, uncached (engine/backend/cuda/cuda_devices.cpp). Call devices() instead; this is for
// the registry and for tests that compare the two.
device_report probe_devices_now();

} // namespace lorafleet::backend
