// serve_blas.hpp: each entry point resolved once with dlsym from the cuBLAS that cuda_libraries.cpp has
// loaded (dlopen of the same file with RTLD_NOLOAD: the very same library instance, so handles made by the
// forwarded cublasCreate are valid here). Not loaded: CUBLAS_STATUS_NOT_INITIALIZED, as the other
// forwarders answer. Host code only.
#include "kernels/cuda_libraries.hpp"
#include "kernels/serve_blas.hpp"

#include <dlfcn.h>

namespace lorafleet::kernels {

namespace {

void* cublas_symbol(const char* name) {
    static void* const handle = []() -> void* {
        const cuda_libraries_status& libs = cuda_math_libraries();
        if (!libs.loaded || libs.cublas.empty()) return nullptr;
        return dlopen(libs.cublas.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    }();
    return handle ? dlsym(handle, name) : nullptr;
}

} // namespace

cublasStatus_t serve_gemm_ex(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                             int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
                             const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
                             cudaDataType Ctype, int ldc, cublasComputeType_t compute,
                             cublasGemmAlgo_t algo) {
    using fn_t =
        cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void*,
                           const void*, cudaDataType, int, const void*, cudaDataType, int, const void*, void*,
                           cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
    static const auto fn = reinterpret_cast<fn_t>(cublas_symbol("cublasGemmEx"));
    if (!fn) return CUBLAS_STATUS_NOT_INITIALIZED;
    return fn(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
              compute, algo);
}

cublasStatus_t serve_set_workspace(cublasHandle_t handle, void* workspace, size_t bytes) {
    using fn_t = cublasStatus_t (*)(cublasHandle_t, void*, size_t);
    static const auto fn = reinterpret_cast<fn_t>(cublas_symbol("cublasSetWorkspace_v2"));
    if (!fn) return CUBLAS_STATUS_NOT_INITIALIZED;
    return fn(handle, workspace, bytes);
}

} // namespace lorafleet::kernels
