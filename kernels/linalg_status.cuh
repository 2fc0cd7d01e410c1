// The CUDA, cuBLAS and cuSOLVER status checks of the compression's device linear algebra
// (linalg_device.cu, linalg_batched.cu): a failure becomes a linalg_error naming the call.
#pragma once

#include "kernels/linalg_device.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <string>

namespace lorafleet::kernels::detail {

inline void check_cuda(cudaError_t e, const char* api) {
    if (e == cudaSuccess) return;
    cudaGetLastError(); // clear a non-sticky error
    throw linalg_error(api, static_cast<long long>(e),
                       std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")");
}

inline void check_cublas(cublasStatus_t s, const char* api) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    throw linalg_error(api, static_cast<long long>(s), cublasGetStatusString(s));
}

inline void check_cusolver(cusolverStatus_t s, const char* api) {
    if (s == CUSOLVER_STATUS_SUCCESS) return;
    throw linalg_error(api, static_cast<long long>(s), "cuSOLVER status " + std::to_string(int(s)));
}

} // namespace lorafleet::kernels::detail
