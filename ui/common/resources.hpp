// The console's Qt resources (icons) live in the static lorafleet_ui library, whose resource initializer
// the linker would drop; initResources() registers them (idempotent). Any thread, before first use.
#pragma once

namespace lorafleet::ui {

void initResources();

} // namespace lorafleet::ui
