// The status every serving launcher and device object returns: 0 = success, otherwise the failing API's
// name and its message (CUDA runtime or cuBLAS error, a bad argument, or "not compiled" in a build
// without CUDA). Plain C++17, no CUDA types, so the engine can include it. Strings are static (the CUDA
// runtime's own error strings or literals): a status is a value that can be copied anywhere.
#pragma once

namespace lorafleet::kernels {

struct serve_status {
    int code = 0;             // 0: success; CUDA / cuBLAS error code; -1: not compiled; -2: bad argument
    const char* api = "";     // "cudaMalloc", "cublasSgemm", "launch_rms_norm", ...
    const char* message = ""; // why

    bool ok() const { return code == 0; }
};

constexpr int serve_not_compiled_code = -1;
constexpr int serve_bad_argument_code = -2;

// True when this build has the CUDA serving kernels (false: every launcher returns "not compiled").
bool serve_kernels_compiled();

} // namespace lorafleet::kernels
