// The devices this process can compute on, probed ONCE per process and cached: every front end (CLI
// `devices`, the console's About box, status bar and Compress panel) and every device choice (compression
// backends, serving's forward pass) reads the same answer. Only the CUDA runtime is asked (no driver
// library is linked); any runtime error (no driver, driver too old, no device, no cuBLAS / cuSOLVER) means
// "no usable GPU" with the reason, never an abort. Plain engine types: nothing here mentions kernels/.
// Thread safety: devices() may be called from any thread; the first call probes (the others wait for it),
// later calls return the same immutable object. device_memory_now() asks the runtime on every call.
#pragma once

#include <cstdint>
#include <optional>
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

// Free and total memory of a usable CUDA device right now (bytes; not cached: free memory changes). nullopt
// when no usable device has that index or the runtime refuses. The first call creates the device's CUDA
// context in this process (a few hundred MiB of device memory): front ends ask only for a device they
// show or serve on. Any thread. Defined beside the probe (engine/backend/cuda/cuda_devices.cpp).
struct device_memory {
    std::uint64_t free_bytes = 0;
    std::uint64_t total_bytes = 0;
};
std::optional<device_memory> device_memory_now(int index = 0);

} // namespace lorafleet::backend
