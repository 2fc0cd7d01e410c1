// The one device vocabulary of the engine: where compression and serving run. Front ends parse their
// --device / "backend" strings here, so "cpu", "cuda" and "auto" mean the same thing everywhere:
//   cpu       - always the host (OpenBLAS, the engine's thread pool);
//   cuda      - a CUDA device, or an error (backend_unavailable with the device registry's reason);
//   automatic - a CUDA device when the registry (device_registry.hpp) finds a usable one, else the host.
// Plain values, no state; callable from any thread.
#pragma once

#include <string>
#include <string_view>

namespace lorafleet::backend {

enum class device_choice { cpu, cuda, automatic };

// "cpu", "cuda", "auto"; usage_error(where, "unknown device '...' (use cpu, cuda or auto)") otherwise.
device_choice parse_device_choice(std::string_view text, const std::string& where = "--device");
// "cpu", "cuda", "auto".
std::string_view device_choice_name(device_choice d);

} // namespace lorafleet::backend
