// The cached device report (see device_registry.hpp): a function-local static, so the probe runs once,
// thread-safely, on the first call.
#include "engine/backend/device_registry.hpp"

namespace lorafleet::backend {

const device_report& devices() {
    static const device_report report = probe_devices_now();
    return report;
}

} // namespace lorafleet::backend
