// probe_devices_now and device_memory_now (device_registry.hpp) over kernels/device_probe.hpp: the kernels'
// answers copied into the engine's plain types. A device is usable when the probe found the runtime, the
// device and the math libraries (cuBLAS, cuSOLVER) usable; otherwise every device carries the probe's
// reason. Memory is asked only of a device the (cached) probe found usable, so a machine without a GPU
// never initialises the runtime twice.
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

std::optional<device_memory> device_memory_now(int index) {
    const device_report& report = devices();
    if (!report.available) return std::nullopt;
    bool known = false;
    for (const device_info& d : report.devices)
        known = known || (d.index == index && d.usable);
    if (!known) return std::nullopt;
    const kernels::cuda_memory_info m = kernels::query_cuda_memory(index);
    if (!m.ok) return std::nullopt;
    return device_memory{m.free_bytes, m.total_bytes};
}

} // namespace lorafleet::backend
