// CUDA build of the device forward pass and the device adapters (see serve_device_model.hpp). Host code
// only: every device computation is a launcher of serve_kernels.hpp or a cuBLAS SGEMM (fp32 math; TF32 is
// never enabled), all on the object's stream.
#include "kernels/rope_rotate.hpp"
#include "kernels/serve_device_model.hpp"
#include "kernels/serve_kernels.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
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

} // namespace

// ---- device_transformer -------------------------------------------------------------------------------
struct device_transformer::state {
    device_model_geometry g;
    cudaStream_t stream = nullptr;
    cublasHandle_t blas = nullptr;

    float* weights = nullptr; // one allocation for every tensor below
    std::size_t weight_floats = 0;
    const float* embed = nullptr;
    const float* lm_head = nullptr;
    const float* final_norm = nullptr;
    float* inv_freq = nullptr; // [head_dim / 2]
    struct layer {
        const float* input_norm = nullptr;
        const float* post_norm = nullptr;
        const float* weight[serve_module_count] = {};
        const float* bias[serve_module_count] = {};
    };
    std::vector<layer> layers;

    float* keys = nullptr; // [layers, blocks, kv_heads, block_size, head_dim]
    float* values = nullptr;
    int blocks = 0;
    int block_size = 0;

    // Scratch, grown on demand.
    float *x = nullptr, *xn = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr,
          *tmp = nullptr, *gate = nullptr, *up = nullptr, *logits = nullptr;
    std::size_t cap_x = 0, cap_xn = 0, cap_q = 0, cap_k = 0, cap_v = 0, cap_att = 0, cap_tmp = 0,
                cap_gate = 0, cap_up = 0, cap_logits = 0;
    int* ints = nullptr; // tokens, positions, table_offset, out_rows, tables
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
    std::vector<sampling_row_params> host_params;
    int rows = 0;

    ~state() {
        for (float** p : {&weights, &keys, &values, &x, &xn, &q, &k, &v, &att, &tmp, &gate, &up, &logits})
            release(*p);
        release(ints);
        release(params);
        release(u);
        release(sampled);
        release(sample_ids);
        release(sample_prob);
        if (blas) cublasDestroy(blas);
        if (stream) cudaStreamDestroy(stream);
    }

    std::size_t scratch_bytes() const {
        return (cap_x + cap_xn + cap_q + cap_k + cap_v + cap_att + cap_tmp + cap_gate + cap_up + cap_logits) *
                   sizeof(float) +
               cap_ints * sizeof(int);
    }

    // Carves the weight allocation: layout of `assign` is replayed with a real base pointer.
    template <class F> void carve(F&& take, bool tied, const bool (*has_bias)[serve_module_count]) {
        const std::size_t h = std::size_t(g.hidden), V = std::size_t(g.vocab);
        embed = take(V * h);
        lm_head = tied ? embed : take(V * h);
        final_norm = take(h);
        inv_freq = take(std::size_t(g.head_dim / 2));
        layers.assign(std::size_t(g.layers), layer{});
        for (int l = 0; l < g.layers; ++l) {
            layer& L = layers[std::size_t(l)];
            L.input_norm = take(h);
            L.post_norm = take(h);
            for (int m = 0; m < serve_module_count; ++m) {
                L.weight[m] = take(std::size_t(g.d_out(m)) * std::size_t(g.d_in(m)));
                L.bias[m] = has_bias && has_bias[l][m] ? take(std::size_t(g.d_out(m))) : nullptr;
            }
        }
    }

    serve_status allocate_weights(bool tied, const bool (*has_bias)[serve_module_count]) {
        std::size_t total = 0;
        carve(
            [&](std::size_t n) {
                total += n;
                return static_cast<float*>(nullptr);
            },
            tied, has_bias);
        release(weights);
        weight_floats = 0;
        LF_TRY(grow(weights, weight_floats, total, "cudaMalloc(weights)"));
        std::size_t at = 0;
        carve(
            [&](std::size_t n) {
                float* p = weights + at;
                at += n;
                return p;
            },
            tied, has_bias);
        // RoPE inverse frequencies exactly as the CPU computes them.
        std::vector<float> inv(std::size_t(g.head_dim / 2));
        for (int i = 0; i < g.head_dim / 2; ++i)
            inv[std::size_t(i)] = rope_inv_freq(g.rope_theta, i, g.head_dim);
        return copy_to_device(inv_freq, inv.data(), inv.size(), stream, "cudaMemcpy(inv_freq)");
    }

    serve_status linear(int l, int m, const float* in, float* out, int n, device_adapters* adapters) {
        const layer& L = layers[std::size_t(l)];
        const int d_out = g.d_out(m), d_in = g.d_in(m);
        const float one = 1.0f, zero = 0.0f;
        // Row-major y [n, d_out] = x [n, d_in] · Wᵀ is column-major yᵀ = W(col-major [d_in, d_out])ᵀ · xᵀ.
        const cublasStatus_t s = cublasSgemm(blas, CUBLAS_OP_T, CUBLAS_OP_N, d_out, n, d_in, &one,
                                             L.weight[m], d_in, in, d_in, &zero, out, d_out);
        if (s != CUBLAS_STATUS_SUCCESS) return {int(s), "cublasSgemm", cublasGetStatusString(s)};
        if (L.bias[m]) LF_TRY(launch_add_bias(out, L.bias[m], n, d_out, stream));
        if (adapters) LF_TRY(adapters->apply(l, m, in, out, stream));
        return {};
    }
};

device_transformer::device_transformer(std::unique_ptr<state> s) : m(std::move(s)) {}
device_transformer::~device_transformer() = default;

serve_status device_transformer::create(const device_model_geometry& g,
                                        std::unique_ptr<device_transformer>& out) {
    if (g.hidden <= 0 || g.layers <= 0 || g.heads <= 0 || g.kv_heads <= 0 || g.head_dim <= 0 ||
        g.intermediate <= 0 || g.vocab <= 0)
        return bad_argument("device_transformer", "every dimension of the geometry must be positive");
    if (g.heads % g.kv_heads != 0)
        return bad_argument("device_transformer", "heads must be a multiple of kv_heads");
    if (g.head_dim % 2 != 0 || g.head_dim > serve_max_head_dim)
        return bad_argument("device_transformer", "head_dim must be even and at most 256");
    int count = 0;
    LF_CUDA(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (count == 0) return {int(cudaErrorNoDevice), "cudaGetDeviceCount", "no CUDA device"};
    auto s = std::make_unique<state>();
    s->g = g;
    LF_CUDA(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    const cublasStatus_t b = cublasCreate(&s->blas);
    if (b != CUBLAS_STATUS_SUCCESS) {
        s->blas = nullptr;
        return {int(b), "cublasCreate", cublasGetStatusString(b)};
    }
    cublasSetStream(s->blas, s->stream);
    cublasSetMathMode(s->blas, CUBLAS_DEFAULT_MATH); // plain fp32: no TF32 tensor-core rounding
    out.reset(new device_transformer(std::move(s)));
    return {};
}

serve_status device_transformer::upload(const device_model_source& src) {
    const device_model_geometry& g = m->g;
    if (!src.embed || !src.final_norm || !src.lm_head || int(src.layers.size()) != g.layers)
        return bad_argument("device_transformer::upload", "missing tensors or wrong layer count");
    std::unique_ptr<bool[][serve_module_count]> has_bias(new bool[std::size_t(g.layers)][serve_module_count]);
    for (int l = 0; l < g.layers; ++l) {
        const device_layer_source& L = src.layers[std::size_t(l)];
        if (!L.input_norm || !L.post_norm)
            return bad_argument("device_transformer::upload", "missing norm weights");
        for (int i = 0; i < serve_module_count; ++i) {
            if (!L.weight[i]) return bad_argument("device_transformer::upload", "missing linear weight");
            has_bias[l][i] = L.bias[i] != nullptr;
        }
    }
    const bool tied = src.lm_head == src.embed;
    LF_TRY(m->allocate_weights(tied, has_bias.get()));
    const std::size_t h = std::size_t(g.hidden), V = std::size_t(g.vocab);
    const cudaStream_t s = m->stream;
    LF_TRY(copy_to_device(const_cast<float*>(m->embed), src.embed, V * h, s, "cudaMemcpy(embed)"));
    if (!tied)
        LF_TRY(copy_to_device(const_cast<float*>(m->lm_head), src.lm_head, V * h, s, "cudaMemcpy(lm_head)"));
    LF_TRY(copy_to_device(const_cast<float*>(m->final_norm), src.final_norm, h, s, "cudaMemcpy(final_norm)"));
    for (int l = 0; l < g.layers; ++l) {
        const device_layer_source& S = src.layers[std::size_t(l)];
        const state::layer& D = m->layers[std::size_t(l)];
        LF_TRY(copy_to_device(const_cast<float*>(D.input_norm), S.input_norm, h, s, "cudaMemcpy(norm)"));
        LF_TRY(copy_to_device(const_cast<float*>(D.post_norm), S.post_norm, h, s, "cudaMemcpy(norm)"));
        for (int i = 0; i < serve_module_count; ++i) {
            LF_TRY(copy_to_device(const_cast<float*>(D.weight[i]), S.weight[i],
                                  std::size_t(g.d_out(i)) * std::size_t(g.d_in(i)), s, "cudaMemcpy(linear)"));
            if (S.bias[i])
                LF_TRY(copy_to_device(const_cast<float*>(D.bias[i]), S.bias[i], std::size_t(g.d_out(i)), s,
                                      "cudaMemcpy(bias)"));
        }
    }
    LF_CUDA(cudaStreamSynchronize(s), "cudaStreamSynchronize(upload)");
    return {};
}

serve_status device_transformer::randomize(std::uint64_t seed, float scale) {
    const device_model_geometry& g = m->g;
    LF_TRY(m->allocate_weights(false, nullptr));
    const cudaStream_t s = m->stream;
    // Everything uniform in [-scale, scale), then the norms set to 1 (a sane residual stream).
    const std::size_t half = std::size_t(g.head_dim / 2);
    const std::size_t before_inv = std::size_t(m->inv_freq - m->weights);
    LF_TRY(launch_fill_uniform(m->weights, before_inv, seed, scale, s));
    LF_TRY(launch_fill_uniform(m->inv_freq + half, m->weight_floats - before_inv - half, seed + 1, scale, s));
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
    return {};
}

serve_status device_transformer::allocate_kv(int total_blocks, int block_size) {
    if (total_blocks <= 0 || block_size <= 0)
        return bad_argument("allocate_kv", "blocks and block size must be > 0");
    const device_model_geometry& g = m->g;
    const std::size_t floats = std::size_t(g.layers) * std::size_t(total_blocks) * std::size_t(g.kv_heads) *
                               std::size_t(block_size) * std::size_t(g.head_dim);
    release(m->keys);
    release(m->values);
    m->blocks = 0;
    std::size_t cap = 0;
    LF_TRY(grow(m->keys, cap, floats, "cudaMalloc(keys)"));
    cap = 0;
    LF_TRY(grow(m->values, cap, floats, "cudaMalloc(values)"));
    m->blocks = total_blocks;
    m->block_size = block_size;
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

std::size_t device_transformer::device_bytes() const {
    const device_model_geometry& g = m->g;
    return m->weight_floats * sizeof(float) +
           2 * std::size_t(g.layers) * std::size_t(m->blocks) * std::size_t(g.kv_heads) *
               std::size_t(m->block_size) * std::size_t(g.head_dim) * sizeof(float) +
           m->scratch_bytes();
}

serve_status device_transformer::run(const device_step& st, device_adapters* adapters) {
    state& S = *m;
    const device_model_geometry& g = S.g;
    if (!S.weights)
        return bad_argument("device_transformer::forward", "no weights (upload or randomize first)");
    if (!S.keys) return bad_argument("device_transformer::forward", "no KV pools (allocate_kv first)");
    if (st.n <= 0 || st.rows <= 0 || !st.tokens || !st.positions || !st.table_offset || !st.tables ||
        !st.out_rows)
        return bad_argument("device_transformer::forward", "empty or incomplete step");
    for (int i = 0; i < st.tables_len; ++i)
        if (st.tables[i] < 0 || st.tables[i] >= S.blocks)
            return bad_argument("device_transformer::forward", "block id outside the KV pools");
    const std::size_t n = std::size_t(st.n), h = std::size_t(g.hidden);
    const cudaStream_t s = S.stream;
    LF_TRY(grow(S.x, S.cap_x, n * h, "cudaMalloc(x)"));
    LF_TRY(grow(S.xn, S.cap_xn, std::max(n, std::size_t(st.rows)) * h, "cudaMalloc(xn)"));
    LF_TRY(grow(S.tmp, S.cap_tmp, n * h, "cudaMalloc(tmp)"));
    LF_TRY(grow(S.q, S.cap_q, n * std::size_t(g.q_dim()), "cudaMalloc(q)"));
    LF_TRY(grow(S.att, S.cap_att, n * std::size_t(g.q_dim()), "cudaMalloc(att)"));
    LF_TRY(grow(S.k, S.cap_k, n * std::size_t(g.kv_dim()), "cudaMalloc(k)"));
    LF_TRY(grow(S.v, S.cap_v, n * std::size_t(g.kv_dim()), "cudaMalloc(v)"));
    LF_TRY(grow(S.gate, S.cap_gate, n * std::size_t(g.intermediate), "cudaMalloc(gate)"));
    LF_TRY(grow(S.up, S.cap_up, n * std::size_t(g.intermediate), "cudaMalloc(up)"));
    LF_TRY(grow(S.logits, S.cap_logits, std::size_t(st.rows) * std::size_t(g.vocab), "cudaMalloc(logits)"));

    // One upload for every integer of the step.
    const std::size_t ints = 3 * n + std::size_t(st.rows) + std::size_t(st.tables_len);
    S.host_ints.resize(ints);
    int* hi = S.host_ints.data();
    std::copy(st.tokens, st.tokens + n, hi);
    std::copy(st.positions, st.positions + n, hi + n);
    std::copy(st.table_offset, st.table_offset + n, hi + 2 * n);
    std::copy(st.out_rows, st.out_rows + st.rows, hi + 3 * n);
    std::copy(st.tables, st.tables + st.tables_len, hi + 3 * n + std::size_t(st.rows));
    LF_TRY(grow(S.ints, S.cap_ints, ints, "cudaMalloc(step)"));
    LF_CUDA(cudaMemcpyAsync(S.ints, hi, ints * sizeof(int), cudaMemcpyHostToDevice, s), "cudaMemcpy(step)");
    const int* d_tokens = S.ints;
    const int* d_pos = S.ints + n;
    const int* d_off = S.ints + 2 * n;
    const int* d_rows = S.ints + 3 * n;
    const int* d_tables = d_rows + st.rows;
    if (adapters) LF_TRY(adapters->begin_step(st.token_adapter, st.n, s));

    const paged_kv_layout layout{g.kv_heads, S.block_size, g.head_dim};
    const std::size_t layer_floats =
        std::size_t(S.blocks) * std::size_t(g.kv_heads) * std::size_t(S.block_size) * std::size_t(g.head_dim);
    device_adapters* ad = st.token_adapter ? adapters : nullptr;
    const int nn = st.n;
    LF_TRY(launch_embed(S.embed, d_tokens, S.x, nn, g.hidden, s));
    for (int l = 0; l < g.layers; ++l) {
        const state::layer& L = S.layers[std::size_t(l)];
        float* keys = S.keys + std::size_t(l) * layer_floats;
        float* values = S.values + std::size_t(l) * layer_floats;
        LF_TRY(launch_rms_norm(S.x, nullptr, L.input_norm, S.xn, nn, g.hidden, g.rms_eps, s));
        LF_TRY(S.linear(l, 0, S.xn, S.q, nn, ad));
        LF_TRY(S.linear(l, 1, S.xn, S.k, nn, ad));
        LF_TRY(S.linear(l, 2, S.xn, S.v, nn, ad));
        LF_TRY(launch_rope(S.q, d_pos, S.inv_freq, nn, g.heads, g.head_dim, s));
        LF_TRY(launch_rope(S.k, d_pos, S.inv_freq, nn, g.kv_heads, g.head_dim, s));
        LF_TRY(launch_kv_write(S.k, S.v, d_pos, d_tables, d_off, nn, layout, keys, values, s));
        LF_TRY(launch_decode_attention(S.q, keys, values, d_tables, d_off, d_pos, nn, g.heads, layout, S.att,
                                       s));
        LF_TRY(S.linear(l, 3, S.att, S.tmp, nn, ad));
        LF_TRY(launch_add(S.x, S.tmp, n * h, s));
        LF_TRY(launch_rms_norm(S.x, nullptr, L.post_norm, S.xn, nn, g.hidden, g.rms_eps, s));
        LF_TRY(S.linear(l, 4, S.xn, S.gate, nn, ad));
        LF_TRY(S.linear(l, 5, S.xn, S.up, nn, ad));
        LF_TRY(launch_swiglu(S.gate, S.up, S.gate, n * std::size_t(g.intermediate), s));
        LF_TRY(S.linear(l, 6, S.gate, S.tmp, nn, ad));
        LF_TRY(launch_add(S.x, S.tmp, n * h, s));
    }
    LF_TRY(launch_rms_norm(S.x, d_rows, S.final_norm, S.xn, st.rows, g.hidden, g.rms_eps, s));
    const float one = 1.0f, zero = 0.0f;
    const cublasStatus_t b = cublasSgemm(S.blas, CUBLAS_OP_T, CUBLAS_OP_N, g.vocab, st.rows, g.hidden, &one,
                                         S.lm_head, g.hidden, S.xn, g.hidden, &zero, S.logits, g.vocab);
    if (b != CUBLAS_STATUS_SUCCESS) return {int(b), "cublasSgemm(lm_head)", cublasGetStatusString(b)};
    S.rows = st.rows;
    return {};
}

serve_status device_transformer::forward(const device_step& step, device_adapters* adapters, float* logits) {
    LF_TRY(run(step, adapters));
    LF_CUDA(cudaMemcpyAsync(logits, m->logits, std::size_t(m->rows) * std::size_t(m->g.vocab) * sizeof(float),
                            cudaMemcpyDeviceToHost, m->stream),
            "cudaMemcpy(logits)");
    LF_CUDA(cudaStreamSynchronize(m->stream), "forward");
    return {};
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
    LF_CUDA(cudaStreamSynchronize(S.stream), "forward_sample");
    return {};
}

// ---- device_bank --------------------------------------------------------------------------------------
struct device_bank::state {
    int layers = 0, rank = 0, clusters = 0, slots = 0;
    bool full = true;
    std::vector<int> slot_cluster;
    struct module {
        int d_in = 0, d_out = 0;
        float* vt = nullptr; // [clusters, r, d_in]
        float* u = nullptr;  // [clusters, d_out, r]
        float* cores = nullptr;
    };
    std::vector<module> modules;
    std::vector<int> index; // [layers * 7] -> module, -1
    std::size_t bytes = 0;
    int* tokens = nullptr; // [3, m]: rows, clusters, slots
    std::size_t cap_tokens = 0;
    float* z = nullptr;
    std::size_t cap_z = 0;
    int count = 0, tile_count = 0;
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
};

device_bank::device_bank(std::unique_ptr<state> s) : m(std::move(s)) {}
device_bank::~device_bank() = default;

serve_status device_bank::create(int layers, int rank, int clusters, bool full,
                                 const std::vector<int>& slot_cluster,
                                 const std::vector<bank_module_source>& modules,
                                 std::unique_ptr<device_bank>& out) {
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
    s->slots = int(slot_cluster.size());
    s->slot_cluster = slot_cluster;
    s->index.assign(std::size_t(layers) * serve_module_count, -1);
    const std::size_t r = std::size_t(rank), core = full ? r * r : r;
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
        LF_TRY(grow(md.vt, cap, vt_n, "cudaMalloc(bank V)"));
        cap = 0;
        LF_TRY(grow(md.u, cap, u_n, "cudaMalloc(bank U)"));
        cap = 0;
        LF_TRY(grow(md.cores, cap, core_n, "cudaMalloc(bank cores)"));
        LF_CUDA(cudaMemset(md.vt, 0, vt_n * sizeof(float)), "cudaMemset(bank)");
        LF_CUDA(cudaMemset(md.u, 0, u_n * sizeof(float)), "cudaMemset(bank)");
        LF_CUDA(cudaMemset(md.cores, 0, core_n * sizeof(float)), "cudaMemset(bank)");
        for (int c = 0; c < clusters; ++c) {
            if (!src.vt[std::size_t(c)] || !src.u[std::size_t(c)]) continue;
            LF_CUDA(cudaMemcpy(md.vt + std::size_t(c) * r * std::size_t(src.d_in), src.vt[std::size_t(c)],
                               r * std::size_t(src.d_in) * sizeof(float), cudaMemcpyHostToDevice),
                    "cudaMemcpy(bank V)");
            LF_CUDA(cudaMemcpy(md.u + std::size_t(c) * std::size_t(src.d_out) * r, src.u[std::size_t(c)],
                               std::size_t(src.d_out) * r * sizeof(float), cudaMemcpyHostToDevice),
                    "cudaMemcpy(bank U)");
        }
        if (src.cores && s->slots > 0)
            LF_CUDA(cudaMemcpy(md.cores, src.cores, std::size_t(s->slots) * core * sizeof(float),
                               cudaMemcpyHostToDevice),
                    "cudaMemcpy(bank cores)");
        s->bytes += (vt_n + u_n + core_n) * sizeof(float);
    }
    // The copies and memsets above ran on the legacy stream, which a non-blocking stream does not wait for.
    LF_CUDA(cudaDeviceSynchronize(), "cudaDeviceSynchronize(bank)");
    out.reset(new device_bank(std::move(s)));
    return {};
}

serve_status device_bank::begin_step(const int* token_slot, int n, void* stream) {
    state& S = *m;
    S.count = 0;
    if (!token_slot || n <= 0) return {};
    // Adapted tokens ordered by cluster (stable): each cluster's tokens form one segment.
    std::vector<int> order;
    for (int t = 0; t < n; ++t) {
        const int slot = token_slot[t];
        if (slot < 0) continue;
        if (slot >= S.slots) return bad_argument("device_bank::begin_step", "adapter slot not in the bank");
        order.push_back(t);
    }
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return S.slot_cluster[std::size_t(token_slot[a])] < S.slot_cluster[std::size_t(token_slot[b])];
    });
    const std::size_t c = order.size();
    // [row c | cluster c | slot c | tiles (3 ints each, at most c)]
    static_assert(sizeof(bank_tile) == 3 * sizeof(int), "bank_tile is three ints");
    S.host.resize(6 * c);
    for (std::size_t j = 0; j < c; ++j) {
        const int slot = token_slot[order[j]];
        S.host[j] = order[j];
        S.host[c + j] = S.slot_cluster[std::size_t(slot)];
        S.host[2 * c + j] = slot;
    }
    S.count = int(c);
    S.tile_count = 0;
    if (c == 0) return {};
    S.tile_host.resize(c);
    S.tile_count = plan_bank_tiles(S.host.data() + c, int(c), bank_tile_tokens, S.tile_host.data());
    std::memcpy(S.host.data() + 3 * c, S.tile_host.data(), std::size_t(S.tile_count) * sizeof(bank_tile));
    const std::size_t ints = 3 * c + 3 * std::size_t(S.tile_count);
    LF_TRY(grow(S.tokens, S.cap_tokens, 6 * c, "cudaMalloc(bank tokens)"));
    LF_TRY(grow(S.z, S.cap_z, std::size_t(bank_max_splits) * c * std::size_t(S.rank), "cudaMalloc(bank z)"));
    LF_CUDA(cudaMemcpyAsync(S.tokens, S.host.data(), ints * sizeof(int), cudaMemcpyHostToDevice,
                            as_stream(stream)),
            "cudaMemcpy(bank tokens)");
    return {};
}

serve_status device_bank::apply(int layer, int module, const float* x, float* y, void* stream) {
    state& S = *m;
    if (S.count == 0 || layer < 0 || layer >= S.layers || module < 0 || module >= serve_module_count)
        return {};
    const int idx = S.index[std::size_t(layer) * serve_module_count + std::size_t(module)];
    if (idx < 0) return {};
    const state::module& md = S.modules[std::size_t(idx)];
    bank_module_view view;
    view.vt = md.vt;
    view.u = md.u;
    view.cores = md.cores;
    view.d_in = md.d_in;
    view.d_out = md.d_out;
    view.rank = S.rank;
    view.full = S.full;
    adapted_tokens tok;
    tok.row = S.tokens;
    tok.cluster = S.tokens + S.count;
    tok.slot = S.tokens + 2 * S.count;
    tok.count = S.count;
    tok.tiles = reinterpret_cast<const bank_tile*>(S.tokens + 3 * S.count);
    tok.tile_count = S.tile_count;
    return launch_bank_apply(view, tok, x, y, S.z, stream);
}

std::size_t device_bank::device_bytes() const {
    return m->bytes;
}

// ---- device_lora_cache --------------------------------------------------------------------------------
struct device_lora_cache::state {
    device_model_geometry g;
    std::size_t page_bytes = 0;
    int pages = 0;
    loader load;
    float* pool = nullptr;
    struct page {
        int slot = -1;
        std::uint64_t last = 0;
        std::vector<lora_factor_desc> desc; // [layers * 7], device pointers into the page
    };
    std::vector<page> page_of;
    std::unordered_map<int, int> slot_page;
    std::uint64_t tick = 0, hits = 0, misses = 0;
    int max_rank = 1;
    lora_factor_desc* desc = nullptr; // [layers * 7, n] this step
    std::size_t cap_desc = 0;
    float* t_buf = nullptr;
    std::size_t cap_t = 0;
    int n = 0;
    std::vector<lora_factor_desc> host_desc;
    std::vector<lora_module_source> sources;

    ~state() {
        release(pool);
        release(desc);
        release(t_buf);
    }

    serve_status fill(int p, int slot, cudaStream_t s) {
        sources.clear();
        LF_TRY(load(slot, sources));
        page& pg = page_of[std::size_t(p)];
        pg.desc.assign(std::size_t(g.layers) * serve_module_count, lora_factor_desc{});
        float* base = reinterpret_cast<float*>(reinterpret_cast<char*>(pool) + std::size_t(p) * page_bytes);
        std::size_t at = 0;
        const std::size_t page_floats = page_bytes / sizeof(float);
        for (const lora_module_source& src : sources) {
            if (src.layer < 0 || src.layer >= g.layers || src.kind < 0 || src.kind >= serve_module_count ||
                src.rank <= 0 || !src.a || !src.b)
                return bad_argument("device_lora_cache", "a loaded module is malformed");
            const std::size_t an = std::size_t(src.rank) * std::size_t(g.d_in(src.kind));
            const std::size_t bn = std::size_t(g.d_out(src.kind)) * std::size_t(src.rank);
            if (at + an + bn > page_floats)
                return bad_argument("device_lora_cache", "an adapter exceeds one page");
            LF_TRY(copy_to_device(base + at, src.a, an, s, "cudaMemcpy(lora A)"));
            LF_TRY(copy_to_device(base + at + an, src.b, bn, s, "cudaMemcpy(lora B)"));
            pg.desc[std::size_t(src.layer) * serve_module_count + std::size_t(src.kind)] =
                lora_factor_desc{base + at, base + at + an, src.rank, src.scale};
            max_rank = std::max(max_rank, src.rank);
            at += an + bn;
        }
        pg.slot = slot;
        slot_page[slot] = p;
        return {};
    }
};

device_lora_cache::device_lora_cache(std::unique_ptr<state> s) : m(std::move(s)) {}
device_lora_cache::~device_lora_cache() = default;

serve_status device_lora_cache::create(const device_model_geometry& g, std::size_t page_bytes, int pages,
                                       loader load, std::unique_ptr<device_lora_cache>& out) {
    if (pages <= 0 || page_bytes < sizeof(float) || !load)
        return bad_argument("device_lora_cache", "needs at least one page of positive size and a loader");
    auto s = std::make_unique<state>();
    s->g = g;
    s->page_bytes = (page_bytes + 255) / 256 * 256; // keep every page's factors aligned
    s->pages = pages;
    s->load = std::move(load);
    s->page_of.resize(std::size_t(pages));
    std::size_t cap = 0;
    char* raw = nullptr;
    LF_TRY(grow(raw, cap, s->page_bytes * std::size_t(pages), "cudaMalloc(lora pages)"));
    s->pool = reinterpret_cast<float*>(raw);
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
    state& S = *m;
    S.n = 0;
    if (!token_slot || n <= 0) return {};
    const std::size_t mods = std::size_t(S.g.layers) * serve_module_count;
    S.host_desc.assign(mods * std::size_t(n), lora_factor_desc{});
    for (int t = 0; t < n; ++t) {
        if (token_slot[t] < 0) continue;
        const auto it = S.slot_page.find(token_slot[t]);
        if (it == S.slot_page.end())
            return bad_argument("device_lora_cache::begin_step",
                                "a token's adapter is not resident (prepare first)");
        const auto& desc = S.page_of[std::size_t(it->second)].desc;
        for (std::size_t md = 0; md < mods; ++md)
            S.host_desc[md * std::size_t(n) + std::size_t(t)] = desc[md];
    }
    LF_TRY(grow(S.desc, S.cap_desc, S.host_desc.size(), "cudaMalloc(lora desc)"));
    LF_TRY(grow(S.t_buf, S.cap_t, std::size_t(n) * std::size_t(S.max_rank), "cudaMalloc(lora t)"));
    LF_CUDA(cudaMemcpyAsync(S.desc, S.host_desc.data(), S.host_desc.size() * sizeof(lora_factor_desc),
                            cudaMemcpyHostToDevice, as_stream(stream)),
            "cudaMemcpy(lora desc)");
    S.n = n;
    return {};
}

serve_status device_lora_cache::apply(int layer, int module, const float* x, float* y, void* stream) {
    state& S = *m;
    if (S.n == 0 || layer < 0 || layer >= S.g.layers || module < 0 || module >= serve_module_count) return {};
    const std::size_t md = std::size_t(layer) * serve_module_count + std::size_t(module);
    return launch_bgmv_apply(S.desc + md * std::size_t(S.n), S.n, S.g.d_in(module), S.g.d_out(module),
                             S.max_rank, x, y, S.t_buf, stream);
}

std::size_t device_lora_cache::device_bytes() const {
    return m->page_bytes * std::size_t(m->pages);
}
std::uint64_t device_lora_cache::hits() const {
    return m->hits;
}
std::uint64_t device_lora_cache::misses() const {
    return m->misses;
}

} // namespace lorafleet::kernels
