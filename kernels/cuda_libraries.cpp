// cuda_libraries.hpp: the loader and the cuBLAS / cuSOLVER entry points this project calls, defined
// here with the headers' own declarations (so a signature that drifts from the toolkit fails to compile)
// and forwarded to the real functions, resolved by name on first use. Nothing here is exported from the
// executables' dynamic symbol tables, so the libraries' own calls between each other (cuSOLVER calls
// cuBLAS) still bind to the real functions.
#include "kernels/cuda_libraries.hpp"

#include <cublas_v2.h>
#include <cusolverDn.h>
#include <dlfcn.h>

#include <cstdlib>
#include <string>
#include <vector>

#define LF_STR2(x) #x
#define LF_STR(x) LF_STR2(x)

namespace lorafleet::kernels {
namespace {

struct loaded_libraries {
    cuda_libraries_status status;
    void* cublas = nullptr;
    void* cusolver = nullptr;
    std::string not_loaded_message; // what cublasGetStatusString says while nothing is loaded
};

// dlopen `soname` from the folders in turn ("" = the loader's own search path); the path opened and
// the handle, or null with every folder's error in `why`.
void* open_library(const std::string& soname, const std::vector<std::string>& folders, std::string& path,
                   std::string& why) {
    for (const std::string& folder : folders) {
        const std::string candidate = folder.empty() ? soname : folder + "/" + soname;
        if (void* h = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL)) {
            path = candidate;
            return h;
        }
        const char* err = dlerror();
        if (!why.empty()) why += "; ";
        why += err ? err : candidate + ": not found";
    }
    return nullptr;
}

loaded_libraries load() {
    loaded_libraries l;
    std::vector<std::string> folders;
    if (const char* dir = std::getenv("LORAFLEET_CUDA_LIBDIR"); dir && *dir) {
        folders.push_back(dir);
    } else {
        folders.push_back("");
#ifdef LORAFLEET_CUDA_LIBRARY_DIR
        folders.push_back(LORAFLEET_CUDA_LIBRARY_DIR);
#endif
        folders.push_back("/usr/local/cuda/lib64");
        folders.push_back("/usr/local/cuda/lib");
    }
    const std::string cublas_name = "libcublas.so." LF_STR(CUBLAS_VER_MAJOR);
    const std::string cusolver_name = "libcusolver.so." LF_STR(CUSOLVER_VER_MAJOR);
    std::string why;
    l.cublas = open_library(cublas_name, folders, l.status.cublas, why);
    if (l.cublas) l.cusolver = open_library(cusolver_name, folders, l.status.cusolver, why);
    l.status.loaded = l.cublas && l.cusolver;
    if (!l.status.loaded) {
        l.status.reason = "cannot load " + (l.cublas ? cusolver_name : cublas_name) + " (" + why + ")";
        l.not_loaded_message = "cuBLAS / cuSOLVER not loaded: " + l.status.reason;
    }
    return l;
}

loaded_libraries& libraries() {
    static loaded_libraries l = load();
    return l;
}

enum class library { cublas, cusolver };

// The real function `name` from its library, or null when the library is not loaded.
template <class Fn> Fn resolve(library lib, const char* name) {
    auto& l = libraries();
    void* handle = lib == library::cublas ? l.cublas : l.cusolver;
    return handle ? reinterpret_cast<Fn>(dlsym(handle, name)) : nullptr;
}

} // namespace

const cuda_libraries_status& cuda_math_libraries() {
    return libraries().status;
}

} // namespace lorafleet::kernels

using lorafleet::kernels::library;
using lorafleet::kernels::resolve;

// One forwarding definition per entry point: `fn` is resolved once, on the first call.
#define LF_FORWARD(lib, name, failure, ...)                                                                  \
    static const auto fn = resolve<decltype(&::name)>(lib, #name);                                           \
    return fn ? fn(__VA_ARGS__) : failure

#define LF_CUBLAS(name, ...) LF_FORWARD(library::cublas, name, CUBLAS_STATUS_NOT_INITIALIZED, __VA_ARGS__)
#define LF_CUSOLVER(name, ...)                                                                               \
    LF_FORWARD(library::cusolver, name, CUSOLVER_STATUS_NOT_INITIALIZED, __VA_ARGS__)

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t* handle) {
    LF_CUBLAS(cublasCreate_v2, handle);
}

cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t handle) {
    LF_CUBLAS(cublasDestroy_v2, handle);
}

cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    LF_CUBLAS(cublasSetStream_v2, handle, stream);
}

cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    LF_CUBLAS(cublasSetMathMode, handle, mode);
}

const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
    LF_FORWARD(library::cublas, cublasGetStatusString,
               lorafleet::kernels::libraries().not_loaded_message.c_str(), status);
}

cublasStatus_t CUBLASWINAPI cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                                           cublasOperation_t transb, int m, int n, int k, const float* alpha,
                                           const float* A, int lda, const float* B, int ldb,
                                           const float* beta, float* C, int ldc) {
    LF_CUBLAS(cublasSgemm_v2, handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

cublasStatus_t CUBLASWINAPI cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                                      cublasOperation_t transb, int m, int n, int k,
                                                      const float* alpha, const float* A, int lda,
                                                      long long int strideA, const float* B, int ldb,
                                                      long long int strideB, const float* beta, float* C,
                                                      int ldc, long long int strideC, int batchCount) {
    LF_CUBLAS(cublasSgemmStridedBatched, handle, transa, transb, m, n, k, alpha, A, lda, strideA, B, ldb,
              strideB, beta, C, ldc, strideC, batchCount);
}

cublasStatus_t CUBLASWINAPI cublasDgemm_v2(cublasHandle_t handle, cublasOperation_t transa,
                                           cublasOperation_t transb, int m, int n, int k, const double* alpha,
                                           const double* A, int lda, const double* B, int ldb,
                                           const double* beta, double* C, int ldc) {
    LF_CUBLAS(cublasDgemm_v2, handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

cusolverStatus_t CUSOLVERAPI cusolverDnCreate(cusolverDnHandle_t* handle) {
    LF_CUSOLVER(cusolverDnCreate, handle);
}

cusolverStatus_t CUSOLVERAPI cusolverDnDestroy(cusolverDnHandle_t handle) {
    LF_CUSOLVER(cusolverDnDestroy, handle);
}

cusolverStatus_t CUSOLVERAPI cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t stream) {
    LF_CUSOLVER(cusolverDnSetStream, handle, stream);
}

cusolverStatus_t CUSOLVERAPI cusolverDnSgeqrf_bufferSize(cusolverDnHandle_t handle, int m, int n, float* A,
                                                         int lda, int* lwork) {
    LF_CUSOLVER(cusolverDnSgeqrf_bufferSize, handle, m, n, A, lda, lwork);
}

cusolverStatus_t CUSOLVERAPI cusolverDnSgeqrf(cusolverDnHandle_t handle, int m, int n, float* A, int lda,
                                              float* tau, float* work, int lwork, int* info) {
    LF_CUSOLVER(cusolverDnSgeqrf, handle, m, n, A, lda, tau, work, lwork, info);
}

cusolverStatus_t CUSOLVERAPI cusolverDnSorgqr_bufferSize(cusolverDnHandle_t handle, int m, int n, int k,
                                                         const float* A, int lda, const float* tau,
                                                         int* lwork) {
    LF_CUSOLVER(cusolverDnSorgqr_bufferSize, handle, m, n, k, A, lda, tau, lwork);
}

cusolverStatus_t CUSOLVERAPI cusolverDnSorgqr(cusolverDnHandle_t handle, int m, int n, int k, float* A,
                                              int lda, const float* tau, float* work, int lwork, int* info) {
    LF_CUSOLVER(cusolverDnSorgqr, handle, m, n, k, A, lda, tau, work, lwork, info);
}

cusolverStatus_t CUSOLVERAPI cusolverDnSsyevd_bufferSize(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                                         cublasFillMode_t uplo, int n, const float* A,
                                                         int lda, const float* W, int* lwork) {
    LF_CUSOLVER(cusolverDnSsyevd_bufferSize, handle, jobz, uplo, n, A, lda, W, lwork);
}

cusolverStatus_t CUSOLVERAPI cusolverDnSsyevd(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                              cublasFillMode_t uplo, int n, float* A, int lda, float* W,
                                              float* work, int lwork, int* info) {
    LF_CUSOLVER(cusolverDnSsyevd, handle, jobz, uplo, n, A, lda, W, work, lwork, info);
}

cusolverStatus_t CUSOLVERAPI cusolverDnDsyevd_bufferSize(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                                         cublasFillMode_t uplo, int n, const double* A,
                                                         int lda, const double* W, int* lwork) {
    LF_CUSOLVER(cusolverDnDsyevd_bufferSize, handle, jobz, uplo, n, A, lda, W, lwork);
}

cusolverStatus_t CUSOLVERAPI cusolverDnDsyevd(cusolverDnHandle_t handle, cusolverEigMode_t jobz,
                                              cublasFillMode_t uplo, int n, double* A, int lda, double* W,
                                              double* work, int lwork, int* info) {
    LF_CUSOLVER(cusolverDnDsyevd, handle, jobz, uplo, n, A, lda, W, work, lwork, info);
}
