// The resident set size of this process, for the status bar's memory readout. Linux: /proc/self/statm.
// Any thread.
#pragma once

#include <optional>

namespace lorafleet::ui {

// Bytes of physical memory the process uses now; nullopt where /proc is unavailable.
std::optional<unsigned long long> residentSetBytes();

} // namespace lorafleet::ui
