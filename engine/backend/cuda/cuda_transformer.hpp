// The forward pass on a CUDA device with the CPU transformer's contract (transformer.hpp): the same step
// (any mix of sequences, prefill chunks and decode tokens), the same validation and errors, the same
// kv_cache bookkeeping, and logits back on the host in the same step_logits layout. The device work is
// kernels::device_transformer (kernels/serve_device_model.hpp, a plain C++ interface: the engine never
// includes CUDA headers): weights uploaded once at construction in the device precision (bf16 by default:
// tensor-core GEMMs with fp32 accumulation, a bf16 KV cache; fp32: SGEMM and fp32 storage, the exactness
// mode), paged keys and values in device pools whose block ids are the kv_cache's, decode steps replayed
// from per-bucket CUDA graphs (kernels/serve_device_model.hpp).
// The kv_cache passed to forward() provides the block bookkeeping only; its own host storage is never
// touched. The device pools hold the data of one cache: they are (re)allocated to the cache's block
// count the first time a cache is seen and when a different one is passed, which forgets what the device
// held, so use one cache per cuda_transformer and fill it only through this object (keys a CPU
// transformer wrote into the cache's host storage are not on the device). Adapters: a
// kernels::device_adapters (a device_bank from cuda_bank.hpp, or cuda_lora_cache::device()), slots as the
// host providers number them. In fp32 results agree with the CPU transformer to float rounding (different
// summation orders), not bit for bit; in bf16 / fp16 to the storage's rounding (greedy tokens mostly agree).
// Not thread-safe: one forward() at a time; the weights are shared and immutable.
#pragma once

#include "engine/backend/cuda/cuda_status.hpp"
#include "engine/serve/model/kv_cache.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/model/step_layout.hpp"
#include "engine/serve/model/transformer.hpp"
#include "kernels/serve_device_model.hpp"

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

// Device failures throw backend::device_error (cuda_status.hpp), a backend_unavailable.
using backend::throw_if_failed;

// The kernels-side geometry of a model.
kernels::device_model_geometry device_geometry(const io::model_geometry& g);

// Views of a loaded model's float32 tensors in the kernels' layout (no copy; valid while `w` lives).
kernels::device_model_source device_source(const model_weights& w);

// "bf16", "fp16", "fp32" (also "bfloat16", "float16", "float32"); usage_error naming `where` otherwise.
kernels::device_precision parse_device_precision(std::string_view text, const std::string& where);
// The precision device serving uses unless told: LORAFLEET_DEVICE_PRECISION from the environment, else
// bf16. (The engine's options do not carry one yet; the CLI's --dtype float32 keeps fp32 through the
// weights' keep_float32.)
kernels::device_precision serving_device_precision();

class cuda_transformer {
public:
    // Uploads the weights to the device. Throws backend_unavailable (with the reason) when this build has
    // no CUDA backend, no device is usable, or the device runs out of memory.
    explicit cuda_transformer(std::shared_ptr<const model_weights> weights,
                              kernels::device_precision precision = serving_device_precision());
    ~cuda_transformer();

    const model_weights& weights() const { return *m_weights; }
    const io::model_geometry& geometry() const { return m_weights->geometry(); }
    kv_cache make_cache(std::uint64_t budget_bytes, int block_size = 16) const {
        return kv_cache(geometry(), budget_bytes, block_size);
    }

    // As transformer::forward (same validation, errors and cache updates). A device failure throws
    // backend_unavailable; the step's sequences then keep their positions before the step's first one
    // (a requested rewind stays done) and hold no blocks beyond them.
    step_logits forward(kv_cache& cache, std::span<const sequence_step> batch,
                        kernels::device_adapters* adapters = nullptr);
    // As ForwardPass::forward_tokens: the same step, each sequence's next token picked on the device
    // (kernels::launch_sample_rows), only the ids copied back.
    std::vector<int> forward_tokens(kv_cache& cache, std::span<const sequence_step> batch,
                                    kernels::device_adapters* adapters, std::span<const token_choice> choices,
                                    int vocab_limit);

    std::size_t device_bytes() const { return m_device->device_bytes(); }
    std::size_t weight_bytes() const { return m_device->weight_bytes(); }
    std::size_t kv_pool_bytes() const { return m_device->kv_pool_bytes(); }
    kernels::device_precision precision() const { return m_device->precision(); }
    // Launches, graph replays and device busy time of the steps so far (device_step_stats).
    const kernels::device_step_stats& step_stats() const { return m_device->step_stats(); }
    void set_graphs(bool on) { m_device->set_graphs(on); }

private:
    struct pending_step {
        step_layout layout;
        std::vector<int> old_length; // lengths before the step, restored if the device fails
        kernels::device_step step;
    };
    // Validates and reserves the step and fills p.step; false when it has no token.
    bool begin_step(kv_cache& cache, std::span<const sequence_step> batch, kernels::device_adapters* adapters,
                    pending_step& p);
    // Commits the step, or rolls the reservations back and throws when the device failed.
    void end_step(kv_cache& cache, std::span<const sequence_step> batch, const pending_step& p,
                  const kernels::serve_status& status);

    std::shared_ptr<const model_weights> m_weights;
    std::unique_ptr<kernels::device_transformer> m_device;
    const kv_cache* m_cache = nullptr; // the cache whose data the device pools hold
    int m_cache_blocks = 0;
    int m_cache_block_size = 0;
    // Step staging (host), reused.
    std::vector<int> m_table_offset, m_tables;
};

} // namespace lorafleet::serve
