// Picks a compression backend by name: "cpu", "cuda" or "auto" (the best available; CPU until the CUDA
// backend exists). Unknown names are a usage_error; a backend that is not built is backend_unavailable.
#pragma once

#include "engine/compress/compress_backend.hpp"

#include <memory>
#include <string_view>

namespace lorafleet::compress {

// `threads` is the CPU backend's worker count (0 = all hardware threads).
std::unique_ptr<CompressBackend> make_compress_backend(std::string_view name, int threads = 0);

} // namespace lorafleet::compress
