// Picks a compression backend (compress/compress_backend.hpp) by device choice: "cpu", "cuda" or "auto"
// (CUDA when the device registry finds a usable device, else the CPU). The compression code itself never
// knows CUDA exists: the CUDA backend (OpsBackend over CudaLinalgOps) is defined in engine/backend/cuda/
// and reached only through the declarations below.
// Errors: an unknown name is a usage_error naming --device (the flag of compress, add and serve); "cuda"
// without a usable device (or in a build without CUDA) is backend_unavailable carrying the registry's reason;
// a device that fails while working throws backend::device_error. Thread affinity: the functions may be
// called from any thread; a returned backend is used by one thread at a time (compress_backend.hpp).
#pragma once

#include "engine/backend/device_choice.hpp"
#include "engine/compress/compress_backend.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace lorafleet::backend {

// `threads` is the CPU backend's worker count (0 = all hardware threads); `gpu_memory_mb` the CUDA
// backend's device memory budget (0 = 90% of the device's free memory).
std::unique_ptr<compress::CompressBackend> make_compress_backend(device_choice device, int threads = 0,
                                                                 std::size_t gpu_memory_mb = 0);
// The same from "cpu", "cuda" or "auto" (parse_device_choice: usage_error("--device", ...) otherwise).
std::unique_ptr<compress::CompressBackend> make_compress_backend(std::string_view name, int threads = 0,
                                                                 std::size_t gpu_memory_mb = 0);

struct cuda_backend_options {
    std::size_t memory_budget_mb = 0; // device memory the backend may hold (0 = 90% of free memory)
    int device = 0;
};

// True when a CUDA device is usable (device_registry.hpp); `reason` (optional) receives why not.
bool cuda_backend_usable(std::string* reason = nullptr);

// The CUDA compression backend (engine/backend/cuda/cuda_backend.cpp): backend_unavailable("cuda", reason)
// without a usable device, usage_error for a device index that does not exist.
std::unique_ptr<compress::CompressBackend> make_cuda_backend(const cuda_backend_options& options = {});

} // namespace lorafleet::backend
