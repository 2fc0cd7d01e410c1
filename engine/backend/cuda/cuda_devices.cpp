// probe_devices_now (device_registry.hpp) over kernels/device_probe.hpp: the kernels' probe result copied
// into the engine's plain types. A device is usable when the probe found the runtime, the device and the
// math libraries (cuBLAS, cuSOLVER) usable; otherwise every device carries the probe's reason.
#include "engine/backend/device_registry.hpp"

#include "kernels/device_probe.hpp"

namespace lorafleet::backend {

device_report probe_devices_now() {
    const kernels::cuda_probe_result probe = kernels::probe_cuda_devices();
    device_report r;
    r.compiled = probe.compiled;
    r.available = probe.available;
    r.reason = probe.reason;
    r.runtime_version = probe.runtime_version;
    for (const kernels::cuda_device_info& d : probe.devices)
        r.devices.push_back({d.index, d.name, d.memory_mb, d.cc_major, d.cc_minor, probe.available,
                             probe.available ? "" : probe.reason});
    return r;
}

} // namespace lorafleet::backend
