// A Llama-family decoder forward pass on one CUDA device, behind a plain C++17 interface (no CUDA types),
// so engine/serve/cuda_transformer can drive it without including CUDA headers. It mirrors the CPU
// transformer (engine/serve/model/transformer.cpp) step for step: embed; per layer RMSNorm -> q/k/v
// (+ bias) -> adapters -> RoPE -> paged KV write -> decode attention -> o_proj -> residual -> RMSNorm ->
// gate/up -> SwiGLU -> down -> residual; final norm and lm_head on the rows whose logits are wanted,
// copied back to the host.
// Precision (device_precision, half_elements.hpp): bf16 (default) or fp16 stores the weight matrices,
// the KV cache and the activations fed to the GEMMs in 16 bits, and every dense GEMM (lm_head included)
// runs on tensor cores (cublasGemmEx, 16-bit inputs, fp32 accumulation and output); norms, biases, the
// residual stream, attention math and logits stay fp32. fp32 keeps cuBLAS SGEMM without TF32 and fp32
// storage: the exactness mode the CPU comparison tests use.
// Decode steps run as CUDA graphs (step_packing.hpp): a step whose tokens are one decode token per
// sequence, at most graph_max_tokens, is padded to its bucket; the bucket's graph (captured on first use,
// kept until a buffer it baked in is reallocated or the adapters change their layout) is replayed after
// one copy of the step's integers. Other steps (prefill) run eagerly. Graphs are off when
// LORAFLEET_CUDA_GRAPHS=0 in the environment (or set_graphs(false)). step_stats() counts launches and
// the device's busy time. The caller owns the block bookkeeping (which blocks a
// sequence owns); this object owns the device pools, whose block ids mean the same thing.
// Adapters plug in through device_adapters (kernels-side): a compressed bank resident on the device
// (device_bank) or raw LoRA factors behind a bounded LRU cache of device pages (device_lora_cache).
// Weights are uploaded once (or randomized on the device for benchmarks); scratch grows on demand and
// is reused, so a step allocates only when it is larger than any before it.
// Every method returns a serve_status; on failure the object stays usable for a retry only when the
// status says so (allocation failures leave it as it was). Thread affinity: one thread at a time per
// object (it owns a stream and a cuBLAS handle); the device is the process's current device 0.
#pragma once

#include "kernels/half_elements.hpp"
#include "kernels/sampling_row.hpp"
#include "kernels/serve_status.hpp"
#include "kernels/weight_dtype.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace lorafleet::kernels {

// Module kinds in the engine's order (q, k, v, o, gate, up, down).
constexpr int serve_module_count = 7;

struct device_model_geometry {
    int hidden = 0;
    int layers = 0;
    int heads = 0;
    int kv_heads = 0;
    int head_dim = 0;
    int intermediate = 0;
    int vocab = 0;
    float rms_eps = 1e-6f;
    double rope_theta = 10000.0;

    int q_dim() const { return heads * head_dim; }
    int kv_dim() const { return kv_heads * head_dim; }
    // [d_out, d_in] of module kind m (q, k, v, o, gate, up, down).
    int d_out(int m) const {
        const int out[serve_module_count] = {q_dim(),      kv_dim(),     kv_dim(), hidden,
                                             intermediate, intermediate, hidden};
        return out[m];
    }
    int d_in(int m) const {
        const int in[serve_module_count] = {hidden, hidden, hidden, q_dim(), hidden, hidden, intermediate};
        return in[m];
    }
};

// Host row-major sources in their stored dtype (what engine::model_weights holds: bf16/fp16/fp32 read in
// place from the memory-mapped checkpoint; norms and biases float32); bias data null where absent.
// weights-helper: upload() converts each tensor through a bounded host staging buffer into what the
// device keeps, never a whole-model copy.
struct device_layer_source {
    weight_source input_norm;                   // [hidden]
    weight_source post_norm;                    // [hidden]
    weight_source weight[serve_module_count]{}; // [d_out, d_in]
    weight_source bias[serve_module_count]{};   // [d_out], data null when absent
};
struct device_model_source {
    weight_source embed;                     // [vocab, hidden]
    std::vector<device_layer_source> layers; // [layers]
    weight_source final_norm;                // [hidden]
    weight_source lm_head; // [vocab, hidden]; embed.data == lm_head.data when tied (uploaded once)
    // weights-helper: the user asked for float32 weights (--dtype float32): a device that would store
    // 16-bit weights keeps float32 instead. (Today the device always stores float32.)
    bool keep_float32 = false;
};

// One step, in host memory: n tokens (any mix of prefill chunks and decode tokens of many sequences).
struct device_step {
    int n = 0;
    const int* tokens = nullptr;       // [n]
    const int* positions = nullptr;    // [n]
    const int* table_offset = nullptr; // [n] where the token's block table starts in `tables`
    const int* tables = nullptr;       // [tables_len] concatenated block tables
    int tables_len = 0;
    const int* out_rows = nullptr; // [rows] token indices whose logits are returned, in order
    int rows = 0;
    const int* token_adapter = nullptr; // [n] adapter slot, -1 = base; null = all base
};

// The adapter seam on the device (the kernels-side twin of serve::AdapterDelta): begin_step sees the
// step's per-token slots once; apply adds (layer, module)'s delta to y [n, d_out] from x [n, d_in], both
// device pointers, leaving base tokens' rows untouched.
// For a step replayed from a CUDA graph, begin_fixed_step lays the step's device metadata out for
// `capacity` tokens at addresses that stay fixed, and the apply() calls then launch grids sized for
// `capacity` whatever the step holds (blocks with nothing to do return at once). version() changes
// whenever something a captured apply() baked in changes (a buffer reallocated, a larger rank): the
// transformer then captures again.
class device_adapters {
public:
    virtual ~device_adapters() = default;
    virtual serve_status begin_step(const int* token_slot, int n, void* stream) = 0;
    virtual serve_status begin_fixed_step(const int* token_slot, int n, int capacity, void* stream) = 0;
    virtual serve_status apply(int layer, int module, const float* x, float* y, void* stream) = 0;
    virtual std::size_t device_bytes() const = 0;
    virtual std::uint64_t version() const = 0;
};

// ---- Compressed bank on the device (method.md §7) ----
struct bank_module_source {
    int layer = 0;
    int kind = 0; // module kind 0..6
    int d_in = 0;
    int d_out = 0;
    std::vector<const float*> u;  // [clusters] U_c [d_out, r], null where the cluster has no basis
    std::vector<const float*> vt; // [clusters] V_cᵀ [r, d_in], null likewise
    const float* cores = nullptr; // [slots, r*r or r]; zeros where an adapter lacks the module
};
class device_bank final : public device_adapters {
public:
    // slot_cluster [slots]: each adapter slot's cluster. Uploads everything; the sources may be freed after.
    // The bases are stored in `precision` (bf16 by default: half the bytes, fp32 accumulation), cores fp32.
    static serve_status create(int layers, int rank, int clusters, bool full,
                               const std::vector<int>& slot_cluster,
                               const std::vector<bank_module_source>& modules,
                               std::unique_ptr<device_bank>& out,
                               device_precision precision = device_precision::bf16);
    ~device_bank() override;
    serve_status begin_step(const int* token_slot, int n, void* stream) override;
    serve_status begin_fixed_step(const int* token_slot, int n, int capacity, void* stream) override;
    serve_status apply(int layer, int module, const float* x, float* y, void* stream) override;
    std::size_t device_bytes() const override;
    std::uint64_t version() const override;

    struct state;

private:
    explicit device_bank(std::unique_ptr<state> s);
    std::unique_ptr<state> m;
};

// ---- Raw LoRA behind a bounded device cache (the vLLM / Punica baseline) ----
struct lora_module_source {
    int layer = 0;
    int kind = 0;
    int rank = 0;
    float scale = 1.0f;
    const float* a = nullptr; // [rank, d_in] host
    const float* b = nullptr; // [d_out, rank] host
};
class device_lora_cache final : public device_adapters {
public:
    // Fills an adapter slot's factors on a miss (host memory, valid until the call returns).
    using loader = std::function<serve_status(int slot, std::vector<lora_module_source>& modules)>;
    // `pages` device pages of `page_bytes` each (one adapter per page): capacity = pages * page_bytes.
    // Factors are stored in `precision` (bf16 by default; page_bytes counts float32 factors, so a 16-bit
    // cache fits the same adapters in half of each page).
    static serve_status create(const device_model_geometry& g, std::size_t page_bytes, int pages, loader load,
                               std::unique_ptr<device_lora_cache>& out,
                               device_precision precision = device_precision::bf16);
    ~device_lora_cache() override;
    // Makes slots[0..count) resident in order, evicting least recently used pages not needed by this
    // call; *resident = how many (a prefix) fit. Copies host -> device for misses.
    serve_status prepare(const int* slots, int count, int* resident, void* stream);
    serve_status begin_step(const int* token_slot, int n, void* stream) override; // every slot prepared
    serve_status begin_fixed_step(const int* token_slot, int n, int capacity, void* stream) override;
    serve_status apply(int layer, int module, const float* x, float* y, void* stream) override;
    std::size_t device_bytes() const override;
    std::uint64_t version() const override;
    std::uint64_t hits() const;
    std::uint64_t misses() const;

    struct state;

private:
    explicit device_lora_cache(std::unique_ptr<state> s);
    std::unique_ptr<state> m;
};

// ---- The forward pass ----
// What the steps so far cost. `launches` counts kernel launches and cuBLAS calls the host enqueued
// (a graph replay counts 1 plus the copies around it are not counted), `device_launches` what the device
// ran (a replay counts the launches it captured); gpu_ms is the stream's time from the step's first
// enqueued work to its last (cudaEvent), wall_ms the host's time inside forward(): 1 - gpu / wall is the
// share of the step the device sat idle (an upper bound on busy time for eager steps, whose launch gaps
// fall inside the events).
struct device_step_stats {
    std::uint64_t steps = 0;
    std::uint64_t graph_steps = 0; // steps replayed from a graph
    std::uint64_t captures = 0;    // graphs captured (first use of a bucket, or after a layout change)
    std::uint64_t launches = 0;
    std::uint64_t device_launches = 0;
    double gpu_ms = 0;
    double wall_ms = 0;
};

class device_transformer {
public:
    static serve_status create(const device_model_geometry& g, std::unique_ptr<device_transformer>& out);
    static serve_status create(const device_model_geometry& g, device_precision precision,
                               std::unique_ptr<device_transformer>& out);
    ~device_transformer();

    // The precision asked for at creation; upload() keeps fp32 when the source asks for it (keep_float32).
    device_precision precision() const;
    void set_graphs(bool on); // default: on unless LORAFLEET_CUDA_GRAPHS=0
    bool graphs() const;
    const device_step_stats& step_stats() const;
    void reset_step_stats();

    serve_status upload(const device_model_source& src);        // once; host -> device (any dtype)
    serve_status randomize(std::uint64_t seed, float scale);    // benchmark weights made on the device
    serve_status allocate_kv(int total_blocks, int block_size); // (re)allocates the paged pools
    int kv_blocks() const;
    int kv_block_size() const;

    // Runs one step; logits [rows, vocab] are written to host memory. Synchronous.
    serve_status forward(const device_step& step, device_adapters* adapters, float* logits);
    // Same, but leaves the logits on the device and picks each output row's token there
    // (launch_sample_rows over the first vocab_limit logits, with params[r] and the uniform u[r], host
    // arrays [rows]): only tokens [rows] come back, -1 for a row without a finite logit. Synchronous.
    serve_status forward_sample(const device_step& step, device_adapters* adapters,
                                const sampling_row_params* params, const double* u, int vocab_limit,
                                int* tokens);

    std::size_t device_bytes() const;  // weights + KV pools + scratch
    std::size_t weight_bytes() const;  // the base model's tensors as stored on the device
    std::size_t kv_pool_bytes() const; // the KV pools (0 before allocate_kv)
    void* stream() const;             // the cudaStream_t everything runs on

    struct state;

private:
    explicit device_transformer(std::unique_ptr<state> s);
    serve_status run(const device_step& step, device_adapters* adapters);
    serve_status finish_step(); // stats of the step run() enqueued (after its sync)
    std::unique_ptr<state> m;
};

} // namespace lorafleet::kernels
