// The base model's weights in their stored precision, loaded from a HuggingFace folder (config.json plus
// model.safetensors or a sharded model.safetensors.index.json) of the Llama family: Llama, Mistral,
// Qwen2 (RMSNorm, RoPE, GQA, SwiGLU, optional projection biases, tied embeddings).
// Invariants of a loaded model: every tensor the forward pass reads is present with exactly the shape the
// geometry implies (shape_mismatch names the tensor otherwise); matrices (embeddings, projections, lm_head)
// keep the checkpoint's dtype (F32, F16 or BF16) and are used in place from the memory map, so a model needs
// its checkpoint's bytes of RAM, not twice that (a tensor the file stores misaligned for its element type is
// copied, in its own dtype); norm vectors and biases are widened to float32 on load (a few KiB per layer);
// model_load_options may convert every matrix on load instead (float32 for exactness tests, or a 16-bit
// dtype); features that would change the output and
// that the forward pass does not implement (rope_scaling, other activations, MLP biases, quantized
// weights) are refused with unsupported_error rather than silently ignored. Immutable once loaded, so
// one instance is shared by every forward pass and thread.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_delta.hpp"
#include "engine/serve/model/weight_dtype.hpp"

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

// A read-only row-major tensor that lives inside its model_weights (in the memory map, or in a buffer the
// loader allocated), in its stored dtype.
struct weight_tensor {
    const void* data = nullptr;
    weight_dtype dtype = weight_dtype::f32;
    std::int64_t rows = 0; // matrices: d_out; vectors: the length
    std::int64_t cols = 1; // matrices: d_in; vectors: 1
    bool empty() const { return data == nullptr; }
    std::int64_t numel() const { return rows * cols; }
    std::size_t element_size() const { return weight_dtype_size(dtype); }
    std::uint64_t bytes() const { return std::uint64_t(numel()) * element_size(); }
    // The elements as float32, or null unless the tensor is float32 (norms and biases always are).
    const float* f32() const {
        return dtype == weight_dtype::f32 ? static_cast<const float*>(data) : nullptr;
    }
    // Row r ([cols] elements) widened to float32 into out.
    void row_to_f32(std::int64_t r, float* out) const {
        widen_to_f32(static_cast<const char*>(data) + std::size_t(r) * std::size_t(cols) * element_size(),
                     dtype, std::size_t(cols), out);
    }
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

// What precision the loader gives the matrices: the stored one (default: no conversion, used in place), or
// one dtype for all, converted on load into buffers the model owns (float32 reproduces the old behaviour
// for exactness tests; bfloat16/float16 halve a float32 checkpoint, rounding to nearest even).
enum class weight_dtype_choice : std::uint8_t { keep_stored, f32, bf16, f16 };

struct model_load_options {
    weight_dtype_choice dtype = weight_dtype_choice::keep_stored;
};

// "auto" (keep_stored), "float32", "bfloat16", "float16" (also "fp32"/"f32", "bf16", "fp16"/"f16");
// usage_error naming `option` for anything else.
weight_dtype_choice parse_weight_dtype_choice(std::string_view text, std::string_view option = "--dtype");
std::string_view weight_dtype_choice_name(weight_dtype_choice c); // "auto", "float32", ...

class model_weights {
public:
    // Loads `dir` (a folder with config.json and the weights). Throws io_error, format_error,
    // unsupported_error or shape_mismatch, each naming the file or tensor concerned.
    static std::shared_ptr<const model_weights> load(const std::filesystem::path& dir,
                                                     const model_load_options& options = {});

    model_weights(const model_weights&) = delete;
    model_weights& operator=(const model_weights&) = delete;
    ~model_weights();

    const io::model_geometry& geometry() const { return m_geometry; }
    const std::filesystem::path& folder() const { return m_folder; }
    // The longest context (in tokens) this implementation computes exactly: max_position_embeddings, or
    // the sliding window where the model uses one (we do not implement windowed attention).
    int max_context() const { return m_max_context; }
    // Bytes the forward pass reads per full pass, in the dtypes held (the embedding reads one row per
    // token and is not counted; lm_head is, once even when tied).
    std::uint64_t parameter_bytes() const;
    // Heap bytes the loader allocated for tensors beyond the memory maps (converted or realigned matrices,
    // widened norms and biases): ~0 plus the norms for an aligned checkpoint kept in its stored dtype.
    std::uint64_t resident_bytes() const { return m_resident_bytes; }
    // The dtype the matrices were asked for (keep_stored unless model_load_options said otherwise).
    weight_dtype_choice requested_dtype() const { return m_requested; }

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
    std::uint64_t m_resident_bytes = 0;
    weight_dtype_choice m_requested = weight_dtype_choice::keep_stored;
    std::vector<std::shared_ptr<const void>> m_keep_alive; // mapped files and converted buffers
};

} // namespace lorafleet::serve
