// Picks a compression backend by name: "cpu", "cuda" or "auto" (CUDA when a device is usable, else the
// CPU). Unknown names are a usage_error; "cuda" without a usable device (or in a build without CUDA) is
// backend_unavailable carrying the device probe's reason.
#pragma once

#include "engine/compress/compress_backend.hpp"

#include <cstddef>
#include <memory>
#include <string_view>

namespace lorafleet::compress {

// `threads` is the CPU backend's worker count (0 = all hardware threads); `gpu_memory_mb` the CUDA
// backend's device memory budget (0 = 90% of the device's free memory).
std::unique_ptr<CompressBackend> make_compress_backend(std::string_view name, int threads = 0,
                                                       std::size_t gpu_memory_mb = 0);

} // namespace lorafleet::compress
