// The base model's weights in float32, loaded from a HuggingFace folder (config.json plus
// model.safetensors or a sharded model.safetensors.index.json) of the Llama family: Llama, Mistral,
// Qwen2 (RMSNorm, RoPE, GQA, SwiGLU, optional projection biases, tied embeddings).
// Invariants of a loaded model: every tensor the forward pass reads is present with exactly the shape the
// geometry implies (shape_mismatch names the tensor otherwise); everything is float32 (F16/BF16 converted
// on load, F32 used in place from the memory map when aligned); features that would change the output and
// that the forward pass does not implement (rope_scaling, other activations, MLP biases, quantized
// weights) are refused with unsupported_error rather than silently ignored. Immutable once loaded, so
// one instance is shared by every forward pass and thread.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_delta.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <vector>

namespace lorafleet::serve {

// A read-only row-major float32 tensor that lives inside its model_weights.
struct weight_tensor {
    const float* data = nullptr;
    std::int64_t rows = 0; // matrices: d_out; vectors: the length
    std::int64_t cols = 1; // matrices: d_in; vectors: 1
    bool empty() const { return data == nullptr; }
    std::int64_t numel() const { return rows * cols; }
};

struct linear_weights {
    weight_tensor weight; // [d_out, d_in]
    weight_tensor bias;   // [d_out], empty when the module has none
};

struct layer_weights {
    weight_tensor input_norm;                             // [d_model]
    std::array<linear_weights, module_kind_count> linear; // indexed by module_kind
    weight_tensor post_attention_norm;                    // [d_model]
    const linear_weights& operator[](module_kind m) const { return linear[static_cast<int>(m)]; }
};

class model_weights {
public:
    // Loads `dir` (a folder with config.json and the weights). Throws io_error, format_error,
    // unsupported_error or shape_mismatch, each naming the file or tensor concerned.
    static std::shared_ptr<const model_weights> load(const std::filesystem::path& dir);

    model_weights(const model_weights&) = delete;
    model_weights& operator=(const model_weights&) = delete;
    ~model_weights();

    const io::model_geometry& geometry() const { return m_geometry; }
    const std::filesystem::path& folder() const { return m_folder; }
    // The longest context (in tokens) this implementation computes exactly: max_position_embeddings, or
    // the sliding window where the model uses one (we do not implement windowed attention).
    int max_context() const { return m_max_context; }
    std::uint64_t parameter_bytes() const; // float32 bytes the forward pass reads per full pass

    weight_tensor embed;               // [vocab, d_model]
    std::vector<layer_weights> layers; // [num_layers]
    weight_tensor final_norm;          // [d_model]
    weight_tensor lm_head;             // [vocab, d_model]; the same memory as `embed` when tied

private:
    model_weights() = default;
    friend class model_loader;

    io::model_geometry m_geometry;
    std::filesystem::path m_folder;
    int m_max_context = 0;
    std::vector<std::shared_ptr<const void>> m_keep_alive; // mapped files and converted buffers
};

} // namespace lorafleet::serve
