// serve_status / linalg_error -> device_error (see cuda_status.hpp).
#include "engine/backend/cuda/cuda_status.hpp"

namespace lorafleet::backend {

void throw_if_failed(const kernels::serve_status& s, const std::string& where) {
    if (s.ok()) return;
    throw device_error(where, s.api, s.code, s.message);
}

device_error to_device_error(const kernels::linalg_error& e, const std::string& where) {
    return device_error(where, e.api(), e.code(), e.message());
}

} // namespace lorafleet::backend
