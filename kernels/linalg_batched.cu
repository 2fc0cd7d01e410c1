// CUDA implementation of linalg_batched.hpp. The library entry points it needs beyond cuda_libraries.cpp's
// (pointer-array / grouped GEMMs, batched syev) are resolved here by name from the libraries that
// cuda_math_libraries() loaded, through the headers' own declarations (decltype), so nothing new is
// linked. Element logic comes from linalg_batched_elementwise.hpp.
#include "kernels/cuda_libraries.hpp"
#include "kernels/linalg_batched.hpp"
#include "kernels/linalg_batched_elementwise.hpp"
#include "kernels/linalg_status.cuh"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>
#include <dlfcn.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

namespace lorafleet::kernels {

namespace {

using detail::check_cublas;
using detail::check_cuda;
using detail::check_cusolver;

int as_int(std::int64_t v, const char* what) {
    if (v < 0 || v > 0x7fffffff)
        throw linalg_error(what, 0, "dimension " + std::to_string(v) + " out of int range");
    return static_cast<int>(v);
}

unsigned blocks_for(std::int64_t n, unsigned threads) {
    const std::int64_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(std::min<std::int64_t>(std::max<std::int64_t>(b, 1), 65535 * 32));
}

cublasOperation_t to_cublas(mat_op o) {
    return o == mat_op::n ? CUBLAS_OP_N : CUBLAS_OP_T;
}

// `name` from the loaded cuBLAS (or cuSOLVER), or null (not loaded, or a toolkit without it).
template <class Fn> Fn library_symbol(bool solver, const char* name) {
    const auto& st = cuda_math_libraries();
    if (!st.loaded) return nullptr;
    const std::string& path = solver ? st.cusolver : st.cublas;
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (h == nullptr) return nullptr;
    return reinterpret_cast<Fn>(dlsym(h, name));
}

#define LF_SYMBOL(solver, name) library_symbol<decltype(&::name)>(solver, #name)

template <class Fn> Fn required(Fn fn, const char* name) {
    if (fn == nullptr)
        throw linalg_error(name, 0,
                           "not found in the loaded CUDA math libraries (" +
                               (cuda_math_libraries().loaded ? std::string("toolkit too old")
                                                             : cuda_math_libraries().reason) +
                               ")");
    return fn;
}

cudaStream_t stream_of(linalg_context& ctx) {
    return static_cast<cudaStream_t>(native_handles(ctx).stream);
}
cublasHandle_t blas_of(linalg_context& ctx) {
    return static_cast<cublasHandle_t>(native_handles(ctx).blas);
}
cusolverDnHandle_t solver_of(linalg_context& ctx) {
    return static_cast<cusolverDnHandle_t>(native_handles(ctx).solver);
}

__global__ void pad_identity_kernel(double* a, std::int64_t n, const std::int64_t* sizes, std::int64_t batch,
                                    double pad) {
    const std::int64_t total = n * batch;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t i = idx % n, j = idx / n;
        double& x = a[j * n * n + i * n + i];
        x = padded_diagonal(i, sizes[j], x, pad);
    }
}

__global__ void gather_columns_kernel(const float* src, float* dst, std::int64_t d, std::int64_t cols,
                                      const std::int64_t* index) {
    const std::int64_t total = d * cols;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t row = idx % d, c = idx / d;
        dst[idx] = src[gathered_column_source(row, index[c], d)];
    }
}

__global__ void take_top_columns_kernel(const double* vecs, std::int64_t n, std::int64_t batch,
                                        const std::int64_t* rows, const std::int64_t* k,
                                        const std::int64_t* dst_off, std::int64_t max_rows,
                                        std::int64_t max_k, double* dst) {
    const std::int64_t per = max_rows * max_k, total = per * batch;
    for (std::int64_t idx = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; idx < total;
         idx += std::int64_t(gridDim.x) * blockDim.x) {
        const std::int64_t j = idx / per, rest = idx % per, row = rest % max_rows, c = rest / max_rows;
        const std::int64_t from = top_column_source(j, row, c, n, rows[j], k[j]);
        if (from >= 0) dst[top_column_dest(row, c, rows[j], dst_off[j])] = vecs[from];
    }
}

// Items sorted into runs of equal shape (m, n, k, lda, ldb, ldc); empty items dropped.
template <class Item>
std::vector<std::vector<const Item*>> shape_groups(const Item* items, std::size_t count) {
    std::vector<const Item*> live;
    for (std::size_t i = 0; i < count; ++i)
        if (items[i].m > 0 && items[i].n > 0 && items[i].k > 0) live.push_back(&items[i]);
    auto key = [](const Item* it) { return std::make_tuple(it->m, it->n, it->k, it->lda, it->ldb, it->ldc); };
    std::stable_sort(live.begin(), live.end(), [&](const Item* a, const Item* b) { return key(a) < key(b); });
    std::vector<std::vector<const Item*>> groups;
    for (const Item* it : live) {
        if (groups.empty() || key(groups.back().front()) != key(it)) groups.emplace_back();
        groups.back().push_back(it);
    }
    return groups;
}

// Uploads the A, B, C pointer arrays of `groups` (in group order) into `scratch`; returns the three
// device arrays.
template <class T, class Item>
std::tuple<const T* const*, const T* const*, T* const*>
upload_pointers(linalg_context& ctx, const std::vector<std::vector<const Item*>>& groups, std::size_t live,
                device_buffer& scratch) {
    std::vector<const void*> ptr(3 * live);
    std::size_t i = 0;
    for (const auto& g : groups)
        for (const Item* it : g) {
            ptr[i] = it->a;
            ptr[live + i] = it->b;
            ptr[2 * live + i] = it->c;
            ++i;
        }
    scratch.reserve(ctx, std::max<std::size_t>(ptr.size(), 1) * sizeof(void*));
    upload(ctx, ptr.data(), scratch.data(), ptr.size() * sizeof(void*));
    auto** base = static_cast<void**>(scratch.data());
    return {reinterpret_cast<const T* const*>(base), reinterpret_cast<const T* const*>(base + live),
            reinterpret_cast<T* const*>(base + 2 * live)};
}

template <class T, class Item, class Grouped, class Batched>
std::size_t grouped_gemm(linalg_context& ctx, mat_op ta, mat_op tb, T alpha, T beta, const Item* items,
                         std::size_t count, device_buffer& scratch, Grouped grouped, Batched batched,
                         const char* grouped_name, const char* batched_name) {
    const auto groups = shape_groups(items, count);
    if (groups.empty()) return 0;
    std::size_t live = 0;
    for (const auto& g : groups)
        live += g.size();
    auto [pa, pb, pc] = upload_pointers<T>(ctx, groups, live, scratch);
    const auto ng = groups.size();
    if (grouped != nullptr && ng > 1) {
        std::vector<cublasOperation_t> opa(ng, to_cublas(ta)), opb(ng, to_cublas(tb));
        std::vector<int> m(ng), n(ng), k(ng), lda(ng), ldb(ng), ldc(ng), size(ng);
        std::vector<T> al(ng, alpha), be(ng, beta);
        for (std::size_t g = 0; g < ng; ++g) {
            const Item& it = *groups[g].front();
            m[g] = as_int(it.m, grouped_name);
            n[g] = as_int(it.n, grouped_name);
            k[g] = as_int(it.k, grouped_name);
            lda[g] = as_int(it.lda, grouped_name);
            ldb[g] = as_int(it.ldb, grouped_name);
            ldc[g] = as_int(it.ldc, grouped_name);
            size[g] = as_int(static_cast<std::int64_t>(groups[g].size()), grouped_name);
        }
        check_cublas(grouped(blas_of(ctx), opa.data(), opb.data(), m.data(), n.data(), k.data(), al.data(),
                             pa, lda.data(), pb, ldb.data(), be.data(), pc, ldc.data(), static_cast<int>(ng),
                             size.data()),
                     grouped_name);
        return 1;
    }
    std::size_t off = 0, launches = 0;
    for (const auto& g : groups) {
        const Item& it = *g.front();
        check_cublas(batched(blas_of(ctx), to_cublas(ta), to_cublas(tb), as_int(it.m, batched_name),
                             as_int(it.n, batched_name), as_int(it.k, batched_name), &alpha, pa + off,
                             as_int(it.lda, batched_name), pb + off, as_int(it.ldb, batched_name), &beta,
                             pc + off, as_int(it.ldc, batched_name),
                             as_int(static_cast<std::int64_t>(g.size()), batched_name)),
                     batched_name);
        off += g.size();
        ++launches;
    }
    return launches;
}

} // namespace

std::size_t gemm_grouped(linalg_context& ctx, mat_op ta, mat_op tb, float alpha, float beta,
                         const gemm_item* items, std::size_t count, device_buffer& scratch) {
    static const auto grouped = LF_SYMBOL(false, cublasSgemmGroupedBatched);
    static const auto batched = LF_SYMBOL(false, cublasSgemmBatched);
    return grouped_gemm<float>(ctx, ta, tb, alpha, beta, items, count, scratch, grouped,
                               required(batched, "cublasSgemmBatched"), "cublasSgemmGroupedBatched",
                               "cublasSgemmBatched");
}

std::size_t gemm_grouped_f64(linalg_context& ctx, mat_op ta, mat_op tb, double alpha, double beta,
                             const gemm_item_f64* items, std::size_t count, device_buffer& scratch) {
    static const auto grouped = LF_SYMBOL(false, cublasDgemmGroupedBatched);
    static const auto batched = LF_SYMBOL(false, cublasDgemmBatched);
    return grouped_gemm<double>(ctx, ta, tb, alpha, beta, items, count, scratch, grouped,
                                required(batched, "cublasDgemmBatched"), "cublasDgemmGroupedBatched",
                                "cublasDgemmBatched");
}

std::size_t syev_batched_f64(linalg_context& ctx, std::int64_t n, double* a, double* w, std::int64_t batch,
                             device_buffer& work) {
    if (n == 0 || batch == 0) return 0;
    static const auto create = LF_SYMBOL(true, cusolverDnCreateParams);
    static const auto destroy = LF_SYMBOL(true, cusolverDnDestroyParams);
    static const auto size_fn = LF_SYMBOL(true, cusolverDnXsyevBatched_bufferSize);
    static const auto solve = LF_SYMBOL(true, cusolverDnXsyevBatched);
    cusolverDnParams_t params = nullptr;
    check_cusolver(required(create, "cusolverDnCreateParams")(&params), "cusolverDnCreateParams");
    struct params_guard {
        cusolverDnParams_t p;
        decltype(destroy) d;
        ~params_guard() {
            if (d != nullptr) d(p);
        }
    } guard{params, destroy};
    std::size_t dev_bytes = 0, host_bytes = 0;
    check_cusolver(required(size_fn, "cusolverDnXsyevBatched_bufferSize")(
                       solver_of(ctx), params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n,
                       CUDA_R_64F, a, n, CUDA_R_64F, w, CUDA_R_64F, &dev_bytes, &host_bytes, batch),
                   "cusolverDnXsyevBatched_bufferSize");
    const std::size_t info_bytes = static_cast<std::size_t>(batch) * sizeof(int);
    const std::size_t info_at = (dev_bytes + 255) / 256 * 256;
    work.reserve(ctx, info_at + info_bytes);
    std::vector<char> host_work(std::max<std::size_t>(host_bytes, 1));
    int* info = reinterpret_cast<int*>(static_cast<char*>(work.data()) + info_at);
    check_cusolver(required(solve, "cusolverDnXsyevBatched")(
                       solver_of(ctx), params, CUSOLVER_EIG_MODE_VECTOR, CUBLAS_FILL_MODE_LOWER, n,
                       CUDA_R_64F, a, n, CUDA_R_64F, w, CUDA_R_64F, work.data(), dev_bytes, host_work.data(),
                       host_bytes, info, batch),
                   "cusolverDnXsyevBatched");
    std::vector<int> infos(static_cast<std::size_t>(batch));
    download(ctx, info, infos.data(), info_bytes); // waits (the host workspace must outlive the solve)
    for (std::size_t j = 0; j < infos.size(); ++j)
        if (infos[j] != 0)
            throw linalg_error("cusolverDnXsyevBatched", infos[j],
                               "problem " + std::to_string(j) + " of " + std::to_string(batch) +
                                   " did not converge (info " + std::to_string(infos[j]) + ")");
    return 1;
}

std::size_t pad_identity_f64(linalg_context& ctx, double* a, std::int64_t n, const std::int64_t* sizes,
                             std::int64_t batch, double pad) {
    if (n * batch == 0) return 0;
    pad_identity_kernel<<<blocks_for(n * batch, 256), 256, 0, stream_of(ctx)>>>(a, n, sizes, batch, pad);
    check_cuda(cudaGetLastError(), "pad_identity_kernel");
    return 1;
}

std::size_t gather_columns(linalg_context& ctx, const float* src, float* dst, std::int64_t d,
                           std::int64_t cols, const std::int64_t* index) {
    if (d * cols == 0) return 0;
    gather_columns_kernel<<<blocks_for(d * cols, 256), 256, 0, stream_of(ctx)>>>(src, dst, d, cols, index);
    check_cuda(cudaGetLastError(), "gather_columns_kernel");
    return 1;
}

std::size_t take_top_columns_f64(linalg_context& ctx, const double* vecs, std::int64_t n, std::int64_t batch,
                                 const std::int64_t* rows, const std::int64_t* k, const std::int64_t* dst_off,
                                 std::int64_t max_rows, std::int64_t max_k, double* dst) {
    const std::int64_t total = max_rows * max_k * batch;
    if (total == 0) return 0;
    take_top_columns_kernel<<<blocks_for(total, 256), 256, 0, stream_of(ctx)>>>(
        vecs, n, batch, rows, k, dst_off, max_rows, max_k, dst);
    check_cuda(cudaGetLastError(), "take_top_columns_kernel");
    return 1;
}

} // namespace lorafleet::kernels
