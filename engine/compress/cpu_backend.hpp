// The CPU compression backend: OpsBackend (the one implementation of JD-Full / JD-Diag, ops_backend.hpp)
// over HostLinalgOps on a fixed worker pool. Adapters (or column blocks of a big Gram) are split across
// the workers with one single-threaded BLAS call each (per-adapter GEMMs are small, so this beats one
// multi-threaded GEMM at a time; OpenBLAS is pinned to one thread by blas_threads_guard, parallel.hpp).
// Deterministic for a fixed thread count; norms and errors in double.
// Thread affinity: one thread at a time (CompressBackend's contract).
#pragma once

#include "engine/compress/host_linalg_ops.hpp"
#include "engine/compress/ops_backend.hpp"

namespace lorafleet::compress {

struct cpu_backend_options {
    int threads = 0; // 0 = all hardware threads
};

class CpuBackend final : public OpsBackend {
public:
    explicit CpuBackend(cpu_backend_options options = {})
        : OpsBackend("cpu", std::make_unique<HostLinalgOps>(options.threads)) {}

    int threads() const { return static_cast<const HostLinalgOps&>(const_ops()).threads(); }
};

} // namespace lorafleet::compress
