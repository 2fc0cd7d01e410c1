// cuBLAS and cuSOLVER are loaded when first needed (dlopen), not when the program starts. Linked the
// usual way, they (with cuBLASLt, cuSPARSE and nvJitLink behind them) cost every process ~260 MB of
// resident memory and a missing toolkit stops the program from starting at all, although a machine
// without a GPU never calls them. The CUDA build therefore defines the few cuBLAS / cuSOLVER entry
// points it uses itself (cuda_libraries.cpp): each resolves the real one on its first call; when the
// libraries cannot be found, it returns the library's "not initialized" status and
// cublasGetStatusString names what was missing, so errors read like any other cuBLAS error.
// Search order: the folder in LORAFLEET_CUDA_LIBDIR when set (only there), else the sonames through
// the dynamic loader's usual path, then the toolkit folder found at build time and /usr/local/cuda.
// Thread-safe; the libraries are loaded at most once per process and never unloaded.
#pragma once

#include <string>

namespace lorafleet::kernels {

struct cuda_libraries_status {
    bool loaded = false;
    std::string reason; // why not ("" when loaded)
    std::string cublas; // the files loaded (when loaded)
    std::string cusolver;
};

// Loads the libraries on the first call. A build without CUDA returns loaded = false, "not compiled".
const cuda_libraries_status& cuda_math_libraries();

} // namespace lorafleet::kernels
