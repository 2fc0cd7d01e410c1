// The kernels' two error conventions turned into the engine's one (backend/device_error.hpp): the
// serving launchers' serve_status values and the compression library's linalg_error exceptions both
// become a backend::device_error naming where it happened, the failing API, its message and code. Every
// file of engine/backend/cuda reports device failures through these two functions; nothing above the
// backend layer sees a kernels:: type. Stateless; any thread.
#pragma once

#include "engine/backend/device_error.hpp"
#include "kernels/linalg_device.hpp"
#include "kernels/serve_status.hpp"

#include <string>
#include <utility>

namespace lorafleet::backend {

// Throws device_error(where, s.api, s.code, s.message) when `s` is not ok; returns otherwise.
void throw_if_failed(const kernels::serve_status& s, const std::string& where);

// The device_error for a linalg_error (same api, code and message).
device_error to_device_error(const kernels::linalg_error& e, const std::string& where);

// Runs `f`, turning a linalg_error into a device_error(where, ...).
template <class Fn> auto translate_linalg(const std::string& where, Fn&& f) -> decltype(f()) {
    try {
        return std::forward<Fn>(f)();
    } catch (const kernels::linalg_error& e) {
        throw to_device_error(e, where);
    }
}

} // namespace lorafleet::backend
