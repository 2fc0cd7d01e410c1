// parse / format of device_choice (see device_choice.hpp).
#include "engine/backend/device_choice.hpp"

#include "engine/core/error.hpp"

namespace lorafleet::backend {

device_choice parse_device_choice(std::string_view text, const std::string& where) {
    if (text == "cpu") return device_choice::cpu;
    if (text == "cuda") return device_choice::cuda;
    if (text == "auto") return device_choice::automatic;
    throw usage_error(where, "unknown device '" + std::string(text) + "' (use cpu, cuda or auto)");
}

std::string_view device_choice_name(device_choice d) {
    switch (d) {
    case device_choice::cpu:
        return "cpu";
    case device_choice::cuda:
        return "cuda";
    case device_choice::automatic:
        return "auto";
    }
    return "cpu";
}

} // namespace lorafleet::backend
