// CUDA build of the device forward pass and the device adapters (see serve_device_model.hpp). Host code
// only: every device computation is a launcher of serve_kernels.hpp, a cuBLAS GemmEx on tensor cores
// (bf16 / fp16 inputs, fp32 accumulation) or, in fp32 mode, a cuBLAS SGEMM (TF32 never enabled), all on
// the object's stream; decode steps replay per-bucket CUDA graphs of the same launches.
#include "kernels/rope_rotate.hpp"
#include "kernels/serve_blas.hpp"
#include "kernels/serve_device_model.hpp"
#include "kernels/serve_kernels.hpp"
#include "kernels/step_packing.hpp"
#include "kernels/weight_dtype.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

namespace lorafleet::kernels {

namespace {

#define LF_TRY(expr)                                                                                         \
    do {                                                                                                     \
        const serve_status lf_s_ = (expr);                                                                   \
        if (!lf_s_.ok()) return lf_s_;                                                                       \
    } while (0)

#define LF_CUDA(expr, api)                                                                                   \
    do {                                                                                                     \
        const cudaError_t lf_e_ = (expr);                                                                    \
        if (lf_e_ != cudaSuccess) {                                                                          \
            cudaGetLastError();                                                                              \
            return serve_status{int(lf_e_), api, cudaGetErrorString(lf_e_)};                                 \
        }                                                                                                    \
    } while (0)

cudaStream_t as_stream(void* s) {
    return static_cast<cudaStream_t>(s);
}

serve_status bad_argument(const char* api, const char* message) {
    return {serve_bad_argument_code, api, message};
}

// Grows a device buffer to hold `count` elements of T (contents are not kept).
template <class T> serve_status grow(T*& p, std::size_t& capacity, std::size_t count, const char* api) {
    if (count <= capacity && p) return {};
    if (p) cudaFree(p);
    p = nullptr;
    capacity = 0;
    void* raw = nullptr;
    LF_CUDA(cudaMalloc(&raw, std::max<std::size_t>(count, 1) * sizeof(T)), api);
    p = static_cast<T*>(raw);
    capacity = count;
    return {};
}

template <class T> void release(T*& p) {
    if (p) cudaFree(p);
    p = nullptr;
}

serve_status copy_to_device(float* dst, const float* src, std::size_t count, cudaStream_t s,
                            const char* api) {
    LF_CUDA(cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyHostToDevice, s), api);
    return {};
}

// weights-helper: one stored host tensor (any weight dtype) -> float32 device memory. float32 sources are
// copied as they are; bf16/fp16 ones are widened chunk by chunk in a bounded host staging buffer (reused
// after each chunk's copy has finished), so an upload never holds a whole-model float32 copy on the host.
constexpr std::size_t upload_staging_floats = std::size_t(1) << 22; // 16 MiB

serve_status upload_tensor(float* dst, const weight_source& src, std::size_t count,
                           std::vector<float>& staging, cudaStream_t s, const char* api) {
    if (src.dtype == weight_f32)
        return copy_to_device(dst, static_cast<const float*>(src.data), count, s, api);
    if (src.dtype != weight_f16 && src.dtype != weight_bf16) return bad_argument(api, "unknown weight dtype");
    for (std::size_t first = 0; first < count; first += upload_staging_floats) {
        const std::size_t n = std::min(upload_staging_floats, count - first);
        staging.resize(std::max(staging.size(), n));
        weight_to_f32(src.data, src.dtype, first, n, staging.data());
        LF_TRY(copy_to_device(dst + first, staging.data(), n, s, api));
        LF_CUDA(cudaStreamSynchronize(s), api); // the staging buffer is refilled next
    }
    return {};
}

} // namespace

// ---- device_transformer -------------------------------------------------------------------------------
namespace {

cudaDataType cuda_type(device_precision p) {
    return p == device_precision::bf16 ? CUDA_R_16BF : p == device_precision::fp16 ? CUDA_R_16F : CUDA_R_32F;
}

bool graphs_enabled_by_environment() {
    const char* v = std::getenv("LORAFLEET_CUDA_GRAPHS");
    return !(v && std::strcmp(v, "0") == 0);
}

constexpr std::size_t blas_workspace_bytes = std::size_t(32) << 20; // cuBLAS's own workspace (graph-safe)

// One stored host tensor into device elements of precision p: a straight copy when the dtypes agree,
// else converted through the bounded staging buffer (store_element: round to nearest even).
template <class E>
serve_status upload_elements(E* dst, const weight_source& src, std::size_t count, std::vector<E>& staging,
                             cudaStream_t s, const char* api) {
    for (std::size_t first = 0; first < count; first += upload_staging_floats) {
        const std::size_t n = std::min(upload_staging_floats, count - first);
        staging.resize(std::max(staging.size(), n));
        for (std::size_t i = 0; i < n; ++i)
            staging[i] = store_element<E>(weight_element(src.data, src.dtype, first + i));
        LF_CUDA(cudaMemcpyAsync(dst + first, staging.data(), n * sizeof(E), cudaMemcpyHostToDevice, s), api);
        LF_CUDA(cudaStreamSynchronize(s), api); // the staging buffer is refilled next
    }
    return {};
}

} // namespace

struct device_transformer::state {
    device_model_geometry g;
    device_precision requested = device_precision::bf16;
    device_precision prec = device_precision::bf16; // what matrices, KV and GEMM inputs are stored in
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;
    void* blas_workspace = nullptr;

    void* matrices = nullptr; // embed, lm_head, every linear weight: elements of `prec`
    std::size_t matrix_elements = 0;
    float* vectors = nullptr; // norms, biases, inv_freq: float
    std::size_t vector_floats = 0;
    const void* embed = nullptr;
    const void* lm_head = nullptr;
    const float* final_norm = nullptr;
    float* inv_freq = nullptr; // [head_dim / 2]
    struct layer {
        const float* input_norm = nullptr;
        const float* post_norm = nullptr;
        const void* weight[serve_module_count] = {};
        const float* bias[serve_module_count] = {};
    };
    std::vector<layer> layers;

    void* keys = nullptr;   // [layers, blocks + 1, kv_heads, block_size, head_dim] of `prec`; the last block
    void* values = nullptr; // of each layer is the padding sink (step_packing.hpp)
    int blocks = 0;
    int block_size = 0;

    // Scratch, grown on demand (float unless named _h: `prec` elements, only when prec is 16-bit).
    float *x = nullptr, *xn = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr,
          *tmp = nullptr, *gate = nullptr, *up = nullptr, *logits = nullptr;
    std::size_t cap_x = 0, cap_xn = 0, cap_q = 0, cap_k = 0, cap_v = 0, cap_att = 0, cap_tmp = 0,
                cap_gate = 0, cap_up = 0, cap_logits = 0;
    char *xn_h = nullptr, *att_h = nullptr, *gate_h = nullptr; // bytes
    std::size_t cap_xn_h = 0, cap_att_h = 0, cap_gate_h = 0;
    int* ints = nullptr; // the packed step (step_packing.hpp)
    std::size_t cap_ints = 0;
    sampling_row_params* params = nullptr;
    std::size_t cap_params = 0;
    double* u = nullptr;
    std::size_t cap_u = 0;
    int* sampled = nullptr;
    std::size_t cap_sampled = 0;
    int* sample_ids = nullptr; // sampled rows' scratch (launch_sample_rows)
    std::size_t cap_sample_ids = 0;
    double* sample_prob = nullptr;
    std::size_t cap_sample_prob = 0;
    std::vector<int> host_ints;
    std::vector<int> host_slots;
    std::vector<sampling_row_params> host_params;
    int rows = 0;
    std::uint64_t scratch_version = 0; // bumped whenever a buffer a graph may have baked in moves

    // CUDA graphs, one per bucket, with what they baked in.
    bool graphs_on = true;
    struct graph_entry {
        cudaGraphExec_t exec = nullptr;
        std::uint64_t scratch_version = 0;
        const void* keys = nullptr;
        const device_adapters* adapters = nullptr;
        std::uint64_t adapters_version = 0;
        int launches = 0; // kernels + cuBLAS calls captured
    };
    graph_entry graph[graph_bucket_count];
    cudaEvent_t ev_begin = nullptr, ev_end = nullptr;
    device_step_stats stats;
    bool step_events = false; // this step recorded both events
    std::uint64_t step_launches = 0, step_device_launches = 0;
    bool step_graph = false;
    std::chrono::steady_clock::time_point step_start;

    ~state() {
        for (graph_entry& e : graph)
            if (e.exec) cudaGraphExecDestroy(e.exec);
        release(matrices);
        release(keys);
        release(values);
        release(blas_workspace);
        for (float** p : {&vectors, &x, &xn, &q, &k, &v, &att, &tmp, &gate, &up, &logits})
            release(*p);
        for (char** p : {&xn_h, &att_h, &gate_h})
            release(*p);
        release(ints);
        release(params);
        release(u);
        release(sampled);
        release(sample_ids);
        release(sample_prob);
        if (ev_begin) cudaEventDestroy(ev_begin);
        if (ev_end) cudaEventDestroy(ev_end);
        if (blas) cublasDestroy(blas);
        if (stream) cudaStreamDestroy(stream);
    }

    std::size_t elem() const { return std::size_t(element_bytes(prec)); }
    bool half() const { return prec != device_precision::fp32; }

    std::size_t scratch_bytes() const {
        return (cap_x + cap_xn + cap_q + cap_k + cap_v + cap_att + cap_tmp + cap_gate + cap_up + cap_logits) *
                   sizeof(float) +
               cap_xn_h + cap_att_h + cap_gate_h + cap_ints * sizeof(int);
    }
    std::size_t kv_bytes() const {
        return 2 * std::size_t(g.layers) * std::size_t(blocks + 1) * std::size_t(g.kv_heads) *
               std::size_t(block_size) * std::size_t(g.head_dim) * elem();
    }

    // Grows a scratch buffer; a move invalidates every captured graph.
    template <class T> serve_status scratch(T*& p, std::size_t& cap, std::size_t count, const char* api) {
        if (count <= cap && p) return {};
        ++scratch_version;
        return grow(p, cap, count, api);
    }

    // Carves the two weight allocations; `take_m` hands out matrix elements, `take_v` floats.
    template <class M, class F>
    void carve(M&& take_m, F&& take_v, bool tied, const bool (*has_bias)[serve_module_count]) {
        const std::size_t h = std::size_t(g.hidden), V = std::size_t(g.vocab);
        embed = take_m(V * h);
        lm_head = tied ? embed : take_m(V * h);
        final_norm = take_v(h);
        inv_freq = take_v(std::size_t(g.head_dim / 2));
        layers.assign(std::size_t(g.layers), layer{});
        for (int l = 0; l < g.layers; ++l) {
            layer& L = layers[std::size_t(l)];
            L.input_norm = take_v(h);
            L.post_norm = take_v(h);
            for (int m = 0; m < serve_module_count; ++m) {
                L.weight[m] = take_m(std::size_t(g.d_out(m)) * std::size_t(g.d_in(m)));
                L.bias[m] = has_bias && has_bias[l][m] ? take_v(std::size_t(g.d_out(m))) : nullptr;
            }
        }
    }

    serve_status allocate_weights(bool tied, const bool (*has_bias)[serve_module_count]) {
        std::size_t mats = 0, vecs = 0;
        carve(
            [&](std::size_t n) {
                mats += n;
                return static_cast<const void*>(nullptr);
            },
            [&](std::size_t n) {
                vecs += n;
                return static_cast<float*>(nullptr);
            },
            tied, has_bias);
        release(matrices);
        release(vectors);
        matrix_elements = vector_floats = 0;
        char* raw = nullptr;
        std::size_t cap = 0;
        LF_TRY(grow(raw, cap, mats * elem(), "cudaMalloc(weights)"));
        matrices = raw;
        matrix_elements = mats;
        LF_TRY(grow(vectors, vector_floats, vecs, "cudaMalloc(norms)"));
        std::size_t at_m = 0, at_v = 0;
        carve(
            [&](std::size_t n) {
                const void* p = static_cast<char*>(matrices) + at_m * elem();
                at_m += n;
                return p;
            },
            [&](std::size_t n) {
                float* p = vectors + at_v;
                at_v += n;
                return p;
            },
            tied, has_bias);
        // RoPE inverse frequencies exactly as the CPU computes them.
        std::vector<float> inv(std::size_t(g.head_dim / 2));
        for (int i = 0; i < g.head_dim / 2; ++i)
            inv[std::size_t(i)] = rope_inv_freq(g.rope_theta, i, g.head_dim);
        return copy_to_device(inv_freq, inv.data(), inv.size(), stream, "cudaMemcpy(inv_freq)");
    }

    // One stored matrix into the device's precision.
    serve_status put_matrix(const void* dst, const weight_source& src, std::size_t count,
                            std::vector<float>& f32_staging, const char* api) {
        void* d = const_cast<void*>(dst);
        const bool same = (prec == device_precision::bf16 && src.dtype == weight_bf16) ||
                          (prec == device_precision::fp16 && src.dtype == weight_f16);
        if (prec == device_precision::fp32)
            return upload_tensor(static_cast<float*>(d), src, count, f32_staging, stream, api);
        if (same) {
            LF_CUDA(cudaMemcpyAsync(d, src.data, count * 2, cudaMemcpyHostToDevice, stream), api);
            return {};
        }
        if (prec == device_precision::bf16) {
            std::vector<bf16_bits> staging;
            return upload_elements(static_cast<bf16_bits*>(d), src, count, staging, stream, api);
        }
        std::vector<fp16_bits> staging;
        return upload_elements(static_cast<fp16_bits*>(d), src, count, staging, stream, api);
    }

    // y [n, d_out] = x [n, d_in] · Wᵀ with W [d_out, d_in] in `prec`: SGEMM in fp32 mode, else a tensor-core
    // GemmEx on the 16-bit copy of x (x_half) with fp32 accumulation and output.
    serve_status gemm(const void* w, const float* x, const void* x_half, float* y, int d_out, int n, int d_in,
                      const char* api) {
        const float one = 1.0f, zero = 0.0f;
        // Row-major y [n, d_out] = x [n, d_in] · Wᵀ is column-major yᵀ = W(col-major [d_in, d_out])ᵀ · xᵀ.
        cublasStatus_t s;
        if (!half()) {
            s = cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, d_out, n, d_in, &one,
                            static_cast<const float*>(w), d_in, x, d_in, &zero, y, d_out);
        } else {
            const cudaDataType t = cuda_type(prec);
            s = serve_gemm_ex(blas, CUBLAS_OP_T, CUBLAS_OP_N, d_out, n, d_in, &one, w, t, d_in, x_half, t,
                              d_in, &zero, y, CUDA_R_32F, d_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        }
        count_serve_launches(1);
        if (s != CUBLAS_STATUS_SUCCESS) return {int(s), api, cublasGetStatusString(s)};
        return {};
    }

    serve_status linear(int l, int m, const float* in, const void* in_half, float* out, int n,
                        device_adapters* adapters) {
        const layer& L = layers[std::size_t(l)];
        LF_TRY(gemm(L.weight[m], in, in_half, out, g.d_out(m), n, g.d_in(m),
                    half() ? "cublasGemmEx" : "cublasSgemm"));
        if (L.bias[m]) LF_TRY(launch_add_bias(out, L.bias[m], n, g.d_out(m), stream));
        if (adapters) LF_TRY(adapters->apply(l, m, in, out, stream));
        return {};
    }

    // Scratch for steps of n tokens and `rows` output rows.
    serve_status reserve(std::size_t n, std::size_t out_rows) {
        const std::size_t h = std::size_t(g.hidden), mr = std::max(n, out_rows);
        LF_TRY(scratch(x, cap_x, n * h, "cudaMalloc(x)"));
        LF_TRY(scratch(xn, cap_xn, mr * h, "cudaMalloc(xn)"));
        LF_TRY(scratch(tmp, cap_tmp, n * h, "cudaMalloc(tmp)"));
        LF_TRY(scratch(q, cap_q, n * std::size_t(g.q_dim()), "cudaMalloc(q)"));
        LF_TRY(scratch(att, cap_att, n * std::size_t(g.q_dim()), "cudaMalloc(att)"));
        LF_TRY(scratch(k, cap_k, n * std::size_t(g.kv_dim()), "cudaMalloc(k)"));
        LF_TRY(scratch(v, cap_v, n * std::size_t(g.kv_dim()), "cudaMalloc(v)"));
        LF_TRY(scratch(gate, cap_gate, n * std::size_t(g.intermediate), "cudaMalloc(gate)"));
        LF_TRY(scratch(up, cap_up, n * std::size_t(g.intermediate), "cudaMalloc(up)"));
        LF_TRY(scratch(logits, cap_logits, out_rows * std::size_t(g.vocab), "cudaMalloc(logits)"));
        if (half()) {
            LF_TRY(scratch(xn_h, cap_xn_h, mr * h * elem(), "cudaMalloc(xn16)"));
            LF_TRY(scratch(att_h, cap_att_h, n * std::size_t(g.q_dim()) * elem(), "cudaMalloc(att16)"));
            LF_TRY(
                scratch(gate_h, cap_gate_h, n * std::size_t(g.intermediate) * elem(), "cudaMalloc(gate16)"));
        }
        return {};
    }

    // Every launch of one step over n tokens (rows output rows), reading the packed integers at `d`.
    serve_status enqueue(int n, int rows, const int* d, const step_int_layout& L, device_adapters* ad) {
        const int* d_tokens = d + L.tokens();
        const int* d_pos = d + L.positions();
        const int* d_off = d + L.table_offset();
        const int* d_rows = d + L.out_rows();
        const int* d_tables = d + L.tables();
        const cudaStream_t s = stream;
        const std::size_t h = std::size_t(g.hidden);
        const paged_kv_layout layout{g.kv_heads, block_size, g.head_dim};
        const std::size_t layer_bytes = std::size_t(blocks + 1) * std::size_t(g.kv_heads) *
                                        std::size_t(block_size) * std::size_t(g.head_dim) * elem();
        void* xnh = half() ? xn_h : nullptr;
        void* atth = half() ? att_h : nullptr;
        void* gateh = half() ? gate_h : nullptr;
        LF_TRY(launch_embed(embed, prec, d_tokens, x, n, g.hidden, s));
        for (int l = 0; l < g.layers; ++l) {
            const layer& Ly = layers[std::size_t(l)];
            void* kl = static_cast<char*>(keys) + std::size_t(l) * layer_bytes;
            void* vl = static_cast<char*>(values) + std::size_t(l) * layer_bytes;
            LF_TRY(launch_rms_norm(x, nullptr, Ly.input_norm, xn, xnh, prec, n, g.hidden, g.rms_eps, s));
            LF_TRY(linear(l, 0, xn, xnh, q, n, ad));
            LF_TRY(linear(l, 1, xn, xnh, k, n, ad));
            LF_TRY(linear(l, 2, xn, xnh, v, n, ad));
            LF_TRY(launch_rope(q, d_pos, inv_freq, n, g.heads, g.head_dim, s));
            LF_TRY(launch_rope(k, d_pos, inv_freq, n, g.kv_heads, g.head_dim, s));
            LF_TRY(launch_kv_write(k, v, d_pos, d_tables, d_off, n, layout, kl, vl, prec, s));
            LF_TRY(launch_decode_attention(q, kl, vl, prec, d_tables, d_off, d_pos, n, g.heads, layout, att,
                                           atth, s));
            LF_TRY(linear(l, 3, att, atth, tmp, n, ad));
            LF_TRY(launch_add(x, tmp, std::size_t(n) * h, s));
            LF_TRY(launch_rms_norm(x, nullptr, Ly.post_norm, xn, xnh, prec, n, g.hidden, g.rms_eps, s));
            LF_TRY(linear(l, 4, xn, xnh, gate, n, ad));
            LF_TRY(linear(l, 5, xn, xnh, up, n, ad));
            LF_TRY(
                launch_swiglu(gate, up, gate, gateh, prec, std::size_t(n) * std::size_t(g.intermediate), s));
            LF_TRY(linear(l, 6, gate, gateh, tmp, n, ad));
            LF_TRY(launch_add(x, tmp, std::size_t(n) * h, s));
        }
        LF_TRY(launch_rms_norm(x, d_rows, final_norm, xn, xnh, prec, rows, g.hidden, g.rms_eps, s));
        return gemm(lm_head, xn, xnh, logits, g.vocab, rows, g.hidden,
                    half() ? "cublasGemmEx(lm_head)" : "cublasSgemm(lm_head)");
    }

    // Captures enqueue() for bucket b into graph[b] (replacing what was there).
    serve_status capture(int b, const step_int_layout& L, device_adapters* ad) {
        graph_entry& e = graph[b];
        if (e.exec) cudaGraphExecDestroy(e.exec);
        e = graph_entry{};
        const int n = graph_buckets[b];
        const unsigned long long before = serve_launch_count();
        LF_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        const serve_status st = enqueue(n, n, ints, L, ad);
        cudaGraph_t graph_made = nullptr;
        const cudaError_t end = cudaStreamEndCapture(stream, &graph_made);
        if (!st.ok() || end != cudaSuccess) {
            if (graph_made) cudaGraphDestroy(graph_made);
            cudaGetLastError();
            if (!st.ok()) return st;
            return {int(end), "cudaStreamEndCapture", cudaGetErrorString(end)};
        }
        const cudaError_t inst = cudaGraphInstantiate(&e.exec, graph_made, 0);
        cudaGraphDestroy(graph_made);
        if (inst != cudaSuccess) {
            e.exec = nullptr;
            cudaGetLastError();
            return {int(inst), "cudaGraphInstantiate", cudaGetErrorString(inst)};
        }
        e.launches = int(serve_launch_count() - before);
        e.scratch_version = scratch_version;
        e.keys = keys;
        e.adapters = ad;
        e.adapters_version = ad ? ad->version() : 0;
        ++stats.captures;
        return {};
    }

    bool graph_current(int b, const device_adapters* ad) const {
        const graph_entry& e = graph[b];
        return e.exec && e.scratch_version == scratch_version && e.keys == keys && e.adapters == ad &&
               e.adapters_version == (ad ? ad->version() : 0);
    }
};

device_transformer::device_transformer(std::unique_ptr<state> s) : m(std::move(s)) {}
device_transformer::~device_transformer() = default;

serve_status device_transformer::create(const device_model_geometry& g,
                                        std::unique_ptr<device_transformer>& out) {
    return create(g, device_precision::bf16, out);
}

serve_status device_transformer::create(const device_model_geometry& g, device_precision precision,
                                        std::unique_ptr<device_transformer>& out) {
    if (g.hidden <= 0 || g.layers <= 0 || g.heads <= 0 || g.kv_heads <= 0 || g.head_dim <= 0 ||
        g.intermediate <= 0 || g.vocab <= 0)
        return bad_argument("device_transformer", "every dimension of the geometry must be positive");
    if (g.heads % g.kv_heads != 0)
        return bad_argument("device_transformer", "heads must be a multiple of kv_heads");
    if (g.head_dim % 2 != 0 || g.head_dim > serve_max_head_dim)
        return bad_argument("device_transformer", "head_dim must be even and at most 256");
    if (precision != device_precision::bf16 && precision != device_precision::fp16 &&
        precision != device_precision::fp32)
        return bad_argument("device_transformer", "unknown device precision");
    int count = 0;
    LF_CUDA(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (count == 0) return {int(cudaErrorNoDevice), "cudaGetDeviceCount", "no CUDA device"};
    auto s = std::make_unique<state>();
    s->g = g;
    s->requested = s->prec = precision;
    s->graphs_on = graphs_enabled_by_environment();
    LF_CUDA(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    LF_CUDA(cudaEventCreate(&s->ev_begin), "cudaEventCreate");
    LF_CUDA(cudaEventCreate(&s->ev_end), "cudaEventCreate");
    const cublasStatus_t b = cublasCreate(&s->blas);
    if (b != CUBLAS_STATUS_SUCCESS) {
        s->blas = nullptr;
        return {int(b), "cublasCreate", cublasGetStatusString(b)};
    }
    cublasSetStream(s->blas, s->stream);
    cublasSetMathMode(s->blas, CUBLAS_DEFAULT_MATH); // fp32 mode: plain fp32, no TF32 tensor-core rounding
    // A workspace of our own (after SetStream, which resets it): captured GEMMs then never allocate.
    std::size_t cap = 0;
    char* ws = nullptr;
    LF_TRY(grow(ws, cap, blas_workspace_bytes, "cudaMalloc(cuBLAS workspace)"));
    s->blas_workspace = ws;
    const cublasStatus_t w = serve_set_workspace(s->blas, ws, blas_workspace_bytes);
    if (w != CUBLAS_STATUS_SUCCESS) return {int(w), "cublasSetWorkspace", cublasGetStatusString(w)};
    out.reset(new device_transformer(std::move(s)));
    return {};
}

device_precision device_transformer::precision() const {
    return m->prec;
}
void device_transformer::set_graphs(bool on) {
    m->graphs_on = on;
}
bool device_transformer::graphs() const {
    return m->graphs_on;
}
const device_step_stats& device_transformer::step_stats() const {
    return m->stats;
}
void device_transformer::reset_step_stats() {
    m->stats = device_step_stats{};
}

serve_status device_transformer::upload(const device_model_source& src) {
    // weights-helper: sources carry their stored dtype (weight_dtype.hpp). gpuserve: the matrices are
    // stored in the device precision (fp32 when the source asks for it), norms and biases in float32.
    const device_model_geometry& g = m->g;
    if (!src.embed.data || !src.final_norm.data || !src.lm_head.data || int(src.layers.size()) != g.layers)
        return bad_argument("device_transformer::upload", "missing tensors or wrong layer count");
    std::unique_ptr<bool[][serve_module_count]> has_bias(new bool[std::size_t(g.layers)][serve_module_count]);
    for (int l = 0; l < g.layers; ++l) {
        const device_layer_source& L = src.layers[std::size_t(l)];
        if (!L.input_norm.data || !L.post_norm.data)
            return bad_argument("device_transformer::upload", "missing norm weights");
        for (int i = 0; i < serve_module_count; ++i) {
            if (!L.weight[i].data) return bad_argument("device_transformer::upload", "missing linear weight");
            has_bias[l][i] = L.bias[i].data != nullptr;
        }
    }
    m->prec = src.keep_float32 ? device_precision::fp32 : m->requested;
    const bool tied = src.lm_head.data == src.embed.data;
    LF_TRY(m->allocate_weights(tied, has_bias.get()));
    const std::size_t h = std::size_t(g.hidden), V = std::size_t(g.vocab);
    const cudaStream_t s = m->stream;
    std::vector<float> staging; // bounded: at most upload_staging_floats
    auto put = [&](const float* dst, const weight_source& from, std::size_t count, const char* api) {
        return upload_tensor(const_cast<float*>(dst), from, count, staging, s, api);
    };
    auto put_matrix = [&](const void* dst, const weight_source& from, std::size_t count, const char* api) {
        return m->put_matrix(dst, from, count, staging, api);
    };
    LF_TRY(put_matrix(m->embed, src.embed, V * h, "cudaMemcpy(embed)"));
    if (!tied) LF_TRY(put_matrix(m->lm_head, src.lm_head, V * h, "cudaMemcpy(lm_head)"));
    LF_TRY(put(m->final_norm, src.final_norm, h, "cudaMemcpy(final_norm)"));
    for (int l = 0; l < g.layers; ++l) {
        const device_layer_source& S = src.layers[std::size_t(l)];
        const state::layer& D = m->layers[std::size_t(l)];
        LF_TRY(put(D.input_norm, S.input_norm, h, "cudaMemcpy(norm)"));
        LF_TRY(put(D.post_norm, S.post_norm, h, "cudaMemcpy(norm)"));
        for (int i = 0; i < serve_module_count; ++i) {
            LF_TRY(put_matrix(D.weight[i], S.weight[i], std::size_t(g.d_out(i)) * std::size_t(g.d_in(i)),
                              "cudaMemcpy(linear)"));
            if (S.bias[i].data)
                LF_TRY(put(D.bias[i], S.bias[i], std::size_t(g.d_out(i)), "cudaMemcpy(bias)"));
        }
    }
    LF_CUDA(cudaStreamSynchronize(s), "cudaStreamSynchronize(upload)");
    ++m->scratch_version; // the weights moved: no graph survives
    return {};
}

serve_status device_transformer::randomize(std::uint64_t seed, float scale) {
    const device_model_geometry& g = m->g;
    m->prec = m->requested;
    LF_TRY(m->allocate_weights(false, nullptr));
    const cudaStream_t s = m->stream;
    // Every matrix uniform in [-scale, scale) (rounded to the storage), the norms 1 (a sane residual stream).
    LF_TRY(launch_fill_uniform(m->matrices, m->prec, m->matrix_elements, seed, scale, s));
    std::vector<float> ones(std::size_t(g.hidden), 1.0f);
    LF_TRY(
        copy_to_device(const_cast<float*>(m->final_norm), ones.data(), ones.size(), s, "cudaMemcpy(norm)"));
    for (const state::layer& L : m->layers) {
        LF_TRY(copy_to_device(const_cast<float*>(L.input_norm), ones.data(), ones.size(), s,
                              "cudaMemcpy(norm)"));
        LF_TRY(
            copy_to_device(const_cast<float*>(L.post_norm), ones.data(), ones.size(), s, "cudaMemcpy(norm)"));
    }
    LF_CUDA(cudaStreamSynchronize(s), "cudaStreamSynchronize(randomize)");
    ++m->scratch_version;
    return {};
}

serve_status device_transformer::allocate_kv(int total_blocks, int block_size) {
    if (total_blocks <= 0 || block_size <= 0)
        return bad_argument("allocate_kv", "blocks and block size must be > 0");
    const device_model_geometry& g = m->g;
    // One more block per layer than asked: the sink that padding tokens of a graph step write to.
    const std::size_t bytes = std::size_t(g.layers) * std::size_t(total_blocks + 1) *
                              std::size_t(g.kv_heads) * std::size_t(block_size) * std::size_t(g.head_dim) *
                              m->elem();
    release(m->keys);
    release(m->values);
    m->blocks = 0;
    std::size_t cap = 0;
    char* raw = nullptr;
    LF_TRY(grow(raw, cap, bytes, "cudaMalloc(keys)"));
    m->keys = raw;
    cap = 0;
    raw = nullptr;
    LF_TRY(grow(raw, cap, bytes, "cudaMalloc(values)"));
    m->values = raw;
    m->blocks = total_blocks;
    m->block_size = block_size;
    ++m->scratch_version; // graphs baked the pools' layout in (a new pool may reuse the old address)
    return {};
}

int device_transformer::kv_blocks() const {
    return m->blocks;
}
int device_transformer::kv_block_size() const {
    return m->block_size;
}
void* device_transformer::stream() const {
    return m->stream;
}

std::size_t device_transformer::weight_bytes() const {
    return m->matrix_elements * m->elem() + m->vector_floats * sizeof(float);
}

std::size_t device_transformer::kv_pool_bytes() const {
    return m->keys ? m->kv_bytes() : 0;
}

std::size_t device_transformer::device_bytes() const {
    return m->matrix_elements * m->elem() + m->vector_floats * sizeof(float) + (m->keys ? m->kv_bytes() : 0) +
           m->scratch_bytes() + blas_workspace_bytes;
}

serve_status device_transformer::run(const device_step& st, device_adapters* adapters) {
    state& S = *m;
    S.step_start = std::chrono::steady_clock::now();
    S.step_events = false;
    if (!S.matrices)
        return bad_argument("device_transformer::forward", "no weights (upload or randomize first)");
    if (!S.keys) return bad_argument("device_transformer::forward", "no KV pools (allocate_kv first)");
    if (st.n <= 0 || st.rows <= 0 || !st.tokens || !st.positions || !st.table_offset || !st.tables ||
        !st.out_rows)
        return bad_argument("device_transformer::forward", "empty or incomplete step");
    for (int i = 0; i < st.tables_len; ++i)
        if (st.tables[i] < 0 || st.tables[i] >= S.blocks)
            return bad_argument("device_transformer::forward", "block id outside the KV pools");
    device_adapters* ad = st.token_adapter ? adapters : nullptr;
    step_ints in;
    in.n = st.n;
    in.tokens = st.tokens;
    in.positions = st.positions;
    in.table_offset = st.table_offset;
    in.tables = st.tables;
    in.tables_len = st.tables_len;
    in.out_rows = st.out_rows;
    in.rows = st.rows;
    in.token_slots = st.token_adapter;

    // A decode step goes through its bucket's graph (packed at the graph layout's fixed addresses).
    int bucket =
        S.graphs_on && graph_step_eligible(st.n, st.out_rows, st.rows) ? graph_bucket_index(st.n) : -1;
    step_int_layout L;
    if (bucket >= 0) {
        L.capacity = graph_max_tokens;
        L.tables_capacity = S.blocks + 1 + graph_max_tokens;
        S.host_ints.resize(std::size_t(L.total()));
        if (!pack_step(in, graph_buckets[bucket], S.blocks, L, S.host_ints.data())) bucket = -1;
    }
    if (bucket < 0) {
        L.capacity = std::max(st.n, st.rows);
        L.tables_capacity = st.tables_len;
        S.host_ints.resize(std::size_t(L.total()));
        if (!pack_step(in, st.n, S.blocks, L, S.host_ints.data()))
            return bad_argument("device_transformer::forward", "step does not fit its layout");
    }
    const int n_run = bucket >= 0 ? graph_buckets[bucket] : st.n;
    const int rows_run = bucket >= 0 ? n_run : st.rows;
    // Graph steps size everything for the largest bucket once, so later buckets find the same addresses.
    if (bucket >= 0) LF_TRY(S.reserve(graph_max_tokens, graph_max_tokens));
    LF_TRY(S.reserve(std::size_t(n_run), std::size_t(rows_run)));
    LF_TRY(S.scratch(S.ints, S.cap_ints, std::size_t(L.total()), "cudaMalloc(step)"));
    LF_CUDA(cudaMemcpyAsync(S.ints, S.host_ints.data(), std::size_t(L.total()) * sizeof(int),
                            cudaMemcpyHostToDevice, S.stream),
            "cudaMemcpy(step)");
    if (ad) {
        if (bucket >= 0) {
            S.host_slots.assign(S.host_ints.begin() + L.adapter_slots(),
                                S.host_ints.begin() + L.adapter_slots() + n_run);
            LF_TRY(ad->begin_fixed_step(S.host_slots.data(), st.n, n_run, S.stream));
        } else {
            LF_TRY(ad->begin_step(st.token_adapter, st.n, S.stream));
        }
    }
    LF_CUDA(cudaEventRecord(S.ev_begin, S.stream), "cudaEventRecord");
    S.step_graph = bucket >= 0;
    if (bucket >= 0) {
        if (!S.graph_current(bucket, ad)) LF_TRY(S.capture(bucket, L, ad));
        LF_CUDA(cudaGraphLaunch(S.graph[bucket].exec, S.stream), "cudaGraphLaunch");
        S.step_launches = 1;
        S.step_device_launches = std::uint64_t(S.graph[bucket].launches);
    } else {
        const unsigned long long before = serve_launch_count();
        LF_TRY(S.enqueue(st.n, st.rows, S.ints, L, ad));
        S.step_launches = S.step_device_launches = serve_launch_count() - before;
    }
    LF_CUDA(cudaEventRecord(S.ev_end, S.stream), "cudaEventRecord");
    S.step_events = true;
    S.rows = st.rows; // real rows come first: a padded step's extra rows are never read
    return {};
}

serve_status device_transformer::finish_step() {
    state& S = *m;
    ++S.stats.steps;
    S.stats.graph_steps += S.step_graph ? 1 : 0;
    S.stats.launches += S.step_launches;
    S.stats.device_launches += S.step_device_launches;
    if (S.step_events) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, S.ev_begin, S.ev_end) == cudaSuccess) S.stats.gpu_ms += double(ms);
        cudaGetLastError();
    }
    S.stats.wall_ms +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - S.step_start).count();
    return {};
}

serve_status device_transformer::forward(const device_step& step, device_adapters* adapters, float* logits) {
    LF_TRY(run(step, adapters));
    LF_CUDA(cudaMemcpyAsync(logits, m->logits, std::size_t(m->rows) * std::size_t(m->g.vocab) * sizeof(float),
                            cudaMemcpyDeviceToHost, m->stream),
            "cudaMemcpy(logits)");
    LF_CUDA(cudaStreamSynchronize(m->stream), "forward");
    return finish_step();
}

serve_status device_transformer::forward_sample(const device_step& step, device_adapters* adapters,
                                                const sampling_row_params* params, const double* u,
                                                int vocab_limit, int* tokens) {
    LF_TRY(run(step, adapters));
    state& S = *m;
    const std::size_t rows = std::size_t(S.rows);
    if (rows == 0) return {};
    const int vocab = std::min(vocab_limit, S.g.vocab);
    if (vocab <= 0) return bad_argument("device_transformer::forward_sample", "vocab_limit must be positive");
    bool any_sampled = false;
    for (std::size_t r = 0; r < rows; ++r)
        any_sampled = any_sampled || !(params[r].temperature == 0.0f || params[r].top_k == 1);
    LF_TRY(grow(S.params, S.cap_params, rows, "cudaMalloc(params)"));
    LF_TRY(grow(S.u, S.cap_u, rows, "cudaMalloc(u)"));
    LF_TRY(grow(S.sampled, S.cap_sampled, rows, "cudaMalloc(sampled)"));
    if (any_sampled) {
        LF_TRY(grow(S.sample_ids, S.cap_sample_ids, rows * std::size_t(sampling_sort_size(vocab)),
                    "cudaMalloc(sampling ids)"));
        LF_TRY(grow(S.sample_prob, S.cap_sample_prob, rows * std::size_t(vocab),
                    "cudaMalloc(sampling weights)"));
    }
    LF_CUDA(cudaMemcpyAsync(S.params, params, rows * sizeof(sampling_row_params), cudaMemcpyHostToDevice,
                            S.stream),
            "cudaMemcpy(params)");
    LF_CUDA(cudaMemcpyAsync(S.u, u, rows * sizeof(double), cudaMemcpyHostToDevice, S.stream),
            "cudaMemcpy(u)");
    LF_TRY(launch_sample_rows(S.logits, S.rows, vocab, S.g.vocab, S.params, S.u,
                              any_sampled ? S.sample_ids : nullptr, any_sampled ? S.sample_prob : nullptr,
                              S.sampled, S.stream));
    LF_CUDA(cudaMemcpyAsync(tokens, S.sampled, rows * sizeof(int), cudaMemcpyDeviceToHost, S.stream),
            "cudaMemcpy(tokens)");
    S.step_launches += 1; // the sampling kernel, after the step's events
    S.step_device_launches += 1;
    LF_CUDA(cudaStreamSynchronize(S.stream), "forward_sample");
    return finish_step();
}

// ---- device_bank --------------------------------------------------------------------------------------
namespace {

// count floats from host src into device elements of precision p at dst (a staging copy when 16-bit).
serve_status upload_floats_as(void* dst, device_precision p, const float* src, std::size_t count,
                              const char* api) {
    if (p == device_precision::fp32) {
        LF_CUDA(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyHostToDevice), api);
        return {};
    }
    std::vector<unsigned short> staging(count);
    for (std::size_t i = 0; i < count; ++i)
        staging[i] =
            p == device_precision::bf16 ? bf16_from_float(src[i]).bits : fp16_from_float(src[i]).bits;
    LF_CUDA(cudaMemcpy(dst, staging.data(), count * 2, cudaMemcpyHostToDevice), api);
    return {};
}

} // namespace

struct device_bank::state {
    int layers = 0, rank = 0, clusters = 0, slots = 0;
    bool full = true;
    device_precision precision = device_precision::bf16;
    std::vector<int> slot_cluster;
    struct module {
        int d_in = 0, d_out = 0;
        char* vt = nullptr; // [clusters, r, d_in] of `precision`
        char* u = nullptr;  // [clusters, d_out, r]
        float* cores = nullptr;
    };
    std::vector<module> modules;
    std::vector<int> index; // [layers * 7] -> module, -1
    std::size_t bytes = 0;
    // The step's adapted tokens, [live 2 | row cap | cluster cap | slot cap | tiles 3 cap] (cap = the
    // step's count, or the graph capacity in a fixed step).
    int* tokens = nullptr;
    std::size_t cap_tokens = 0;
    float* z = nullptr; // [bank_max_splits, cap, rank]
    std::size_t cap_z = 0;
    int count = 0, tile_count = 0, cap = 0;
    bool fixed = false;
    std::uint64_t version = 0;
    std::vector<int> host;
    std::vector<bank_tile> tile_host;

    ~state() {
        for (module& md : modules) {
            release(md.vt);
            release(md.u);
            release(md.cores);
        }
        release(tokens);
        release(z);
    }

    template <class T> serve_status buffer(T*& p, std::size_t& c, std::size_t count_needed, const char* api) {
        if (count_needed <= c && p) return {};
        ++version; // a captured apply() baked the old address in
        return grow(p, c, count_needed, api);
    }

    // Orders the adapted tokens by cluster and uploads them laid out for `capacity` tokens.
    serve_status prepare(const int* token_slot, int n, int capacity, bool fixed_step, cudaStream_t s) {
        count = tile_count = 0;
        fixed = fixed_step;
        std::vector<int> order;
        for (int t = 0; t < n; ++t) {
            const int slot = token_slot ? token_slot[t] : -1;
            if (slot < 0) continue;
            if (slot >= slots) return bad_argument("device_bank::begin_step", "adapter slot not in the bank");
            order.push_back(t);
        }
        // Adapted tokens ordered by cluster (stable): each cluster's tokens form one segment.
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            return slot_cluster[std::size_t(token_slot[a])] < slot_cluster[std::size_t(token_slot[b])];
        });
        const int c = int(order.size());
        if (!fixed && c == 0) return {};
        // A fixed step keeps the largest graph's capacity so every bucket finds the same addresses.
        cap = fixed ? std::max(capacity, graph_max_tokens) : c;
        if (c > cap) return bad_argument("device_bank::begin_step", "more adapted tokens than the capacity");
        static_assert(sizeof(bank_tile) == 3 * sizeof(int), "bank_tile is three ints");
        const std::size_t C = std::size_t(cap);
        host.assign(2 + 6 * C, 0);
        int* row = host.data() + 2;
        int* cluster = row + C;
        int* slot = cluster + C;
        for (int j = 0; j < c; ++j) {
            const int sl = token_slot[order[std::size_t(j)]];
            row[j] = order[std::size_t(j)];
            cluster[j] = slot_cluster[std::size_t(sl)];
            slot[j] = sl;
        }
        tile_host.resize(std::max<std::size_t>(std::size_t(c), 1));
        const int tiles = c > 0 ? plan_bank_tiles(cluster, c, bank_tile_tokens, tile_host.data()) : 0;
        std::memcpy(slot + C, tile_host.data(), std::size_t(tiles) * sizeof(bank_tile));
        host[0] = c;
        host[1] = tiles;
        count = c;
        tile_count = tiles;
        LF_TRY(buffer(tokens, cap_tokens, host.size(), "cudaMalloc(bank tokens)"));
        LF_TRY(buffer(z, cap_z, std::size_t(bank_max_splits) * C * std::size_t(rank), "cudaMalloc(bank z)"));
        const std::size_t ints = fixed ? host.size() : 2 + 3 * C + 3 * std::size_t(tiles);
        LF_CUDA(cudaMemcpyAsync(tokens, host.data(), ints * sizeof(int), cudaMemcpyHostToDevice, s),
                "cudaMemcpy(bank tokens)");
        return {};
    }
};

device_bank::device_bank(std::unique_ptr<state> s) : m(std::move(s)) {}
device_bank::~device_bank() = default;

serve_status device_bank::create(int layers, int rank, int clusters, bool full,
                                 const std::vector<int>& slot_cluster,
                                 const std::vector<bank_module_source>& modules,
                                 std::unique_ptr<device_bank>& out, device_precision precision) {
    if (layers <= 0 || rank <= 0 || clusters <= 0)
        return bad_argument("device_bank", "layers, rank, clusters > 0");
    if (rank > bank_max_rank)
        return bad_argument("device_bank", "the device kernels take banks of rank at most 128");
    for (int c : slot_cluster)
        if (c < 0 || c >= clusters)
            return bad_argument("device_bank", "an adapter's cluster is out of range");
    auto s = std::make_unique<state>();
    s->layers = layers;
    s->rank = rank;
    s->clusters = clusters;
    s->full = full;
    s->precision = precision;
    s->slots = int(slot_cluster.size());
    s->slot_cluster = slot_cluster;
    s->index.assign(std::size_t(layers) * serve_module_count, -1);
    const std::size_t r = std::size_t(rank), core = full ? r * r : r;
    const std::size_t eb = std::size_t(element_bytes(precision));
    for (const bank_module_source& src : modules) {
        if (src.layer < 0 || src.layer >= layers || src.kind < 0 || src.kind >= serve_module_count ||
            int(src.u.size()) != clusters || int(src.vt.size()) != clusters || src.d_in <= 0 ||
            src.d_out <= 0)
            return bad_argument("device_bank", "a module's layer, kind, shape or basis count is wrong");
        int& idx = s->index[std::size_t(src.layer) * serve_module_count + std::size_t(src.kind)];
        if (idx >= 0) return bad_argument("device_bank", "a module appears twice");
        idx = int(s->modules.size());
        s->modules.emplace_back();
        state::module& md = s->modules.back();
        md.d_in = src.d_in;
        md.d_out = src.d_out;
        const std::size_t vt_n = std::size_t(clusters) * r * std::size_t(src.d_in);
        const std::size_t u_n = std::size_t(clusters) * std::size_t(src.d_out) * r;
        const std::size_t core_n = std::max<std::size_t>(std::size_t(s->slots) * core, 1);
        std::size_t cap = 0;
        LF_TRY(grow(md.vt, cap, vt_n * eb, "cudaMalloc(bank V)"));
        cap = 0;
        LF_TRY(grow(md.u, cap, u_n * eb, "cudaMalloc(bank U)"));
        cap = 0;
        LF_TRY(grow(md.cores, cap, core_n, "cudaMalloc(bank cores)"));
        // Zero bits are +0 in every precision: a cluster without a basis adds nothing.
        LF_CUDA(cudaMemset(md.vt, 0, vt_n * eb), "cudaMemset(bank)");
        LF_CUDA(cudaMemset(md.u, 0, u_n * eb), "cudaMemset(bank)");
        LF_CUDA(cudaMemset(md.cores, 0, core_n * sizeof(float)), "cudaMemset(bank)");
        for (int c = 0; c < clusters; ++c) {
            if (!src.vt[std::size_t(c)] || !src.u[std::size_t(c)]) continue;
            LF_TRY(upload_floats_as(md.vt + std::size_t(c) * r * std::size_t(src.d_in) * eb, precision,
                                    src.vt[std::size_t(c)], r * std::size_t(src.d_in), "cudaMemcpy(bank V)"));
            LF_TRY(upload_floats_as(md.u + std::size_t(c) * std::size_t(src.d_out) * r * eb, precision,
                                    src.u[std::size_t(c)], std::size_t(src.d_out) * r, "cudaMemcpy(bank U)"));
        }
        if (src.cores && s->slots > 0)
            LF_CUDA(cudaMemcpy(md.cores, src.cores, std::size_t(s->slots) * core * sizeof(float),
                               cudaMemcpyHostToDevice),
                    "cudaMemcpy(bank cores)");
        s->bytes += (vt_n + u_n) * eb + core_n * sizeof(float);
    }
    // The copies and memsets above ran on the legacy stream, which a non-blocking stream does not wait for.
    LF_CUDA(cudaDeviceSynchronize(), "cudaDeviceSynchronize(bank)");
    out.reset(new device_bank(std::move(s)));
    return {};
}

serve_status device_bank::begin_step(const int* token_slot, int n, void* stream) {
    return m->prepare(token_slot, n, n, false, as_stream(stream));
}

serve_status device_bank::begin_fixed_step(const int* token_slot, int n, int capacity, void* stream) {
    if (n > capacity) return bad_argument("device_bank::begin_fixed_step", "n above the capacity");
    return m->prepare(token_slot, n, capacity, true, as_stream(stream));
}

serve_status device_bank::apply(int layer, int module, const float* x, float* y, void* stream) {
    state& S = *m;
    if ((!S.fixed && S.count == 0) || layer < 0 || layer >= S.layers || module < 0 ||
        module >= serve_module_count)
        return {};
    const int idx = S.index[std::size_t(layer) * serve_module_count + std::size_t(module)];
    if (idx < 0) return {};
    const state::module& md = S.modules[std::size_t(idx)];
    bank_module_view view;
    const bool f32 = S.precision == device_precision::fp32;
    view.vt = f32 ? reinterpret_cast<const float*>(md.vt) : nullptr;
    view.u = f32 ? reinterpret_cast<const float*>(md.u) : nullptr;
    view.vt_half = f32 ? nullptr : md.vt;
    view.u_half = f32 ? nullptr : md.u;
    view.precision = S.precision;
    view.cores = md.cores;
    view.d_in = md.d_in;
    view.d_out = md.d_out;
    view.rank = S.rank;
    view.full = S.full;
    const std::size_t C = std::size_t(S.cap);
    adapted_tokens tok;
    tok.row = S.tokens + 2;
    tok.cluster = tok.row + C;
    tok.slot = tok.cluster + C;
    tok.count = S.cap;
    tok.tiles = reinterpret_cast<const bank_tile*>(tok.slot + C);
    // A fixed step launches for every tile the capacity could hold; the kernels read the real count.
    tok.tile_count = S.fixed ? S.cap : S.tile_count;
    tok.live = S.fixed ? S.tokens : nullptr;
    return launch_bank_apply(view, tok, x, y, S.z, stream);
}

std::size_t device_bank::device_bytes() const {
    return m->bytes;
}
std::uint64_t device_bank::version() const {
    return m->version;
}

// ---- device_lora_cache --------------------------------------------------------------------------------
struct device_lora_cache::state {
    device_model_geometry g;
    std::size_t page_bytes = 0;
    int pages = 0;
    loader load;
    device_precision precision = device_precision::bf16;
    char* pool = nullptr;
    struct page {
        int slot = -1;
        std::uint64_t last = 0;
        std::vector<lora_factor_desc> desc; // [layers * 7], device pointers into the page
    };
    std::vector<page> page_of;
    std::unordered_map<int, int> slot_page;
    std::uint64_t tick = 0, hits = 0, misses = 0;
    int max_rank = 1;
    lora_factor_desc* desc = nullptr; // [layers * 7, cap] this step
    std::size_t cap_desc = 0;
    float* t_buf = nullptr; // [cap, max_rank]
    std::size_t cap_t = 0;
    int n = 0, cap = 0;
    bool fixed = false;
    std::uint64_t version = 0;
    std::vector<lora_factor_desc> host_desc;
    std::vector<lora_module_source> sources;
    std::vector<unsigned short> staging;

    ~state() {
        release(pool);
        release(desc);
        release(t_buf);
    }

    template <class T> serve_status buffer(T*& p, std::size_t& c, std::size_t count, const char* api) {
        if (count <= c && p) return {};
        ++version;
        return grow(p, c, count, api);
    }

    // count floats into the page at `dst` in the cache's precision. Synchronous for 16-bit (the staging
    // buffer is reused), asynchronous on `s` for fp32 (the loader's memory stays valid until prepare syncs).
    serve_status put(char* dst, const float* src, std::size_t count, cudaStream_t s, const char* api) {
        if (precision == device_precision::fp32)
            return copy_to_device(reinterpret_cast<float*>(dst), src, count, s, api);
        staging.resize(count);
        for (std::size_t i = 0; i < count; ++i)
            staging[i] = precision == device_precision::bf16 ? bf16_from_float(src[i]).bits
                                                             : fp16_from_float(src[i]).bits;
        LF_CUDA(cudaMemcpyAsync(dst, staging.data(), count * 2, cudaMemcpyHostToDevice, s), api);
        LF_CUDA(cudaStreamSynchronize(s), api);
        return {};
    }

    serve_status fill(int p, int slot, cudaStream_t s) {
        sources.clear();
        LF_TRY(load(slot, sources));
        page& pg = page_of[std::size_t(p)];
        pg.desc.assign(std::size_t(g.layers) * serve_module_count, lora_factor_desc{});
        char* base = pool + std::size_t(p) * page_bytes;
        const std::size_t eb = std::size_t(element_bytes(precision));
        std::size_t at = 0; // bytes
        for (const lora_module_source& src : sources) {
            if (src.layer < 0 || src.layer >= g.layers || src.kind < 0 || src.kind >= serve_module_count ||
                src.rank <= 0 || !src.a || !src.b)
                return bad_argument("device_lora_cache", "a loaded module is malformed");
            const std::size_t an = std::size_t(src.rank) * std::size_t(g.d_in(src.kind));
            const std::size_t bn = std::size_t(g.d_out(src.kind)) * std::size_t(src.rank);
            if (at + (an + bn) * eb > page_bytes)
                return bad_argument("device_lora_cache", "an adapter exceeds one page");
            LF_TRY(put(base + at, src.a, an, s, "cudaMemcpy(lora A)"));
            LF_TRY(put(base + at + an * eb, src.b, bn, s, "cudaMemcpy(lora B)"));
            pg.desc[std::size_t(src.layer) * serve_module_count + std::size_t(src.kind)] =
                lora_factor_desc{base + at, base + at + an * eb, src.rank, src.scale};
            if (src.rank > max_rank) {
                max_rank = src.rank;
                ++version; // a captured BGMV baked the old rank bound in
            }
            at += (an + bn) * eb;
        }
        pg.slot = slot;
        slot_page[slot] = p;
        return {};
    }

    serve_status prepare_step(const int* token_slot, int count, int capacity, bool fixed_step,
                              cudaStream_t s) {
        n = 0;
        fixed = fixed_step;
        if (!fixed && (!token_slot || count <= 0)) return {};
        cap = fixed ? std::max(capacity, graph_max_tokens) : count;
        if (count > cap)
            return bad_argument("device_lora_cache::begin_step", "more tokens than the capacity");
        const std::size_t mods = std::size_t(g.layers) * serve_module_count, C = std::size_t(cap);
        host_desc.assign(mods * C, lora_factor_desc{});
        for (int t = 0; t < count; ++t) {
            if (!token_slot || token_slot[t] < 0) continue;
            const auto it = slot_page.find(token_slot[t]);
            if (it == slot_page.end())
                return bad_argument("device_lora_cache::begin_step",
                                    "a token's adapter is not resident (prepare first)");
            const auto& d = page_of[std::size_t(it->second)].desc;
            for (std::size_t md = 0; md < mods; ++md)
                host_desc[md * C + std::size_t(t)] = d[md];
        }
        LF_TRY(buffer(desc, cap_desc, host_desc.size(), "cudaMalloc(lora desc)"));
        LF_TRY(buffer(t_buf, cap_t, C * std::size_t(max_rank), "cudaMalloc(lora t)"));
        LF_CUDA(cudaMemcpyAsync(desc, host_desc.data(), host_desc.size() * sizeof(lora_factor_desc),
                                cudaMemcpyHostToDevice, s),
                "cudaMemcpy(lora desc)");
        n = fixed ? cap : count;
        return {};
    }
};

device_lora_cache::device_lora_cache(std::unique_ptr<state> s) : m(std::move(s)) {}
device_lora_cache::~device_lora_cache() = default;

serve_status device_lora_cache::create(const device_model_geometry& g, std::size_t page_bytes, int pages,
                                       loader load, std::unique_ptr<device_lora_cache>& out,
                                       device_precision precision) {
    if (pages <= 0 || page_bytes < sizeof(float) || !load)
        return bad_argument("device_lora_cache", "needs at least one page of positive size and a loader");
    auto s = std::make_unique<state>();
    s->g = g;
    s->precision = precision;
    // page_bytes counts float32 factors; 16-bit factors need half of it. Pages stay 256-byte aligned.
    const std::size_t stored = precision == device_precision::fp32 ? page_bytes : (page_bytes + 1) / 2;
    s->page_bytes = (stored + 255) / 256 * 256;
    s->pages = pages;
    s->load = std::move(load);
    s->page_of.resize(std::size_t(pages));
    std::size_t cap = 0;
    LF_TRY(grow(s->pool, cap, s->page_bytes * std::size_t(pages), "cudaMalloc(lora pages)"));
    out.reset(new device_lora_cache(std::move(s)));
    return {};
}

serve_status device_lora_cache::prepare(const int* slots, int count, int* resident, void* stream) {
    state& S = *m;
    ++S.tick;
    *resident = 0;
    for (int i = 0; i < count; ++i) {
        const int slot = slots[i];
        const auto it = S.slot_page.find(slot);
        if (it != S.slot_page.end()) {
            S.page_of[std::size_t(it->second)].last = S.tick;
            ++S.hits;
            *resident = i + 1;
            continue;
        }
        // A free page, else the least recently used one this call has not asked for.
        int victim = -1;
        for (int p = 0; p < S.pages; ++p) {
            const auto& pg = S.page_of[std::size_t(p)];
            if (pg.slot < 0) {
                victim = p;
                break;
            }
            if (pg.last < S.tick && (victim < 0 || pg.last < S.page_of[std::size_t(victim)].last)) victim = p;
        }
        if (victim < 0) break;
        auto& pg = S.page_of[std::size_t(victim)];
        if (pg.slot >= 0) S.slot_page.erase(pg.slot);
        pg.slot = -1;
        LF_TRY(S.fill(victim, slot, as_stream(stream)));
        pg.last = S.tick;
        ++S.misses;
        *resident = i + 1;
    }
    // The pages must hold their factors before any stream (the forward pass's included) reads them.
    LF_CUDA(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize(lora pages)");
    return {};
}

serve_status device_lora_cache::begin_step(const int* token_slot, int n, void* stream) {
    return m->prepare_step(token_slot, n, n, false, as_stream(stream));
}

serve_status device_lora_cache::begin_fixed_step(const int* token_slot, int n, int capacity, void* stream) {
    if (n > capacity) return bad_argument("device_lora_cache::begin_fixed_step", "n above the capacity");
    return m->prepare_step(token_slot, n, capacity, true, as_stream(stream));
}

serve_status device_lora_cache::apply(int layer, int module, const float* x, float* y, void* stream) {
    state& S = *m;
    if (S.n == 0 || layer < 0 || layer >= S.g.layers || module < 0 || module >= serve_module_count) return {};
    const std::size_t md = std::size_t(layer) * serve_module_count + std::size_t(module);
    return launch_bgmv_apply(S.desc + md * std::size_t(S.cap), S.precision, S.n, S.g.d_in(module),
                             S.g.d_out(module), S.max_rank, x, y, S.t_buf, stream);
}

std::size_t device_lora_cache::device_bytes() const {
    return m->page_bytes * std::size_t(m->pages);
}
std::uint64_t device_lora_cache::version() const {
    return m->version;
}
std::uint64_t device_lora_cache::hits() const {
    return m->hits;
}
std::uint64_t device_lora_cache::misses() const {
    return m->misses;
}

} // namespace lorafleet::kernels
