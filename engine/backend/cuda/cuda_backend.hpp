// The CUDA compression backend: OpsBackend (ops_backend.hpp, the algorithm shared with the host-tested
// path) over CudaLinalgOps (cuda_linalg_ops.hpp). Created only when kernels::probe_cuda_devices() finds
// a usable device; otherwise backend_unavailable("cuda", <the probe's reason>). Thread affinity: the
// returned backend is used by one thread at a time.
#pragma once

#include "engine/compress/compress_backend.hpp"

#include <cstddef>
#include <memory>
#include <string>

namespace lorafleet::compress {

struct cuda_backend_options {
    std::size_t memory_budget_mb = 0; // device memory the backend may hold (0 = 90% of free memory)
    int device = 0;
};

// True when a CUDA device is usable; `reason` (optional) receives why not.
bool cuda_backend_usable(std::string* reason = nullptr);

std::unique_ptr<CompressBackend> make_cuda_backend(const cuda_backend_options& options = {});

} // namespace lorafleet::compress
