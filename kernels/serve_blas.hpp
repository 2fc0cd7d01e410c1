// The cuBLAS entry points the serving path needs beyond those cuda_libraries.cpp forwards: the
// mixed-precision GEMM (cublasGemmEx: bf16 / fp16 inputs on tensor cores, fp32 accumulation and output)
// and a caller-owned workspace (cublasSetWorkspace, so that GEMMs captured in a CUDA graph never allocate).
// Like the rest of cuBLAS here they are resolved by name on first use from the library that
// cuda_math_libraries() loaded (never linked), under private names so they cannot clash with another
// file's forwarders. Include only from .cu files (cuBLAS types). Thread-safe.
#pragma once

#include <cublas_v2.h>

namespace lorafleet::kernels {

cublasStatus_t serve_gemm_ex(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                             int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
                             const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
                             cudaDataType Ctype, int ldc, cublasComputeType_t compute, cublasGemmAlgo_t algo);

cublasStatus_t serve_set_workspace(cublasHandle_t handle, void* workspace, size_t bytes);

} // namespace lorafleet::kernels
