// io::fleet: a set of loaded PEFT adapters shared read-only by whoever uses them (the compressor's module
// source, the fleet bank builder, the console's fleet store, the device adapter cache). One adapter is a
// peft_adapter (peft_adapter.hpp), immutable once loaded and held by shared_ptr so that a fleet can be
// copied and filtered without copying weights. Order is meaningful to the caller (load order, or bank
// order); an adapter's identity is its `name` (peft_adapter::name, the folder name), unique in a fleet.
// Thread affinity: the vector itself is a value (not synchronized); the adapters it points to are const
// and safe to read from any thread.
#pragma once

#include "engine/io/peft_adapter.hpp"

#include <memory>
#include <vector>

namespace lorafleet::io {

using fleet = std::vector<std::shared_ptr<const peft_adapter>>;

} // namespace lorafleet::io
