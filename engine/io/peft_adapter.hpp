// A HuggingFace PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors), validated
// and held as zero-copy views into the memory-mapped weights file.
//
// What one adapter is, for this program: a set of linear modules, each with ΔW = scale · B · A where
// A = lora_A.weight is [r_i, d_in], B = lora_B.weight is [d_out, r_i] and scale comes from the config
// (method.md §1). Invariants of a loaded adapter: at least one module; per module A and B are 2-D, share
// the inner rank, that rank equals the config's (rank_pattern-resolved) r, A and B share a dtype among
// F32 / F16 / BF16, and (with check_finite) every element is finite; with a base geometry, every module
// is a decoder linear of a layer the base has, with exactly the base's [d_out, d_in].
//
// Representability policy (what is refused, what is loaded with a warning):
//  - refused (unsupported_error): DoRA (use_dora, or any lora_magnitude_vector tensor) because its
//    per-column normalization of W + ΔW is not a low-rank additive update; a bias on lora_B (lora_bias)
//    because y = Wx + B(Ax) + b is not either; pickle checkpoints (adapter_model.bin only); weights in a
//    dtype other than F32 / F16 / BF16.
//  - ignored with a warning: embedding LoRA (lora_embedding_A / lora_embedding_B) and modules_to_save
//    full weights: they are not low-rank linear updates and are neither served nor compressed; tensors
//    this loader does not recognize (listed); modules that target_modules would not have selected.
//  - refused (validation_error): an adapter left with no linear module.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/io/lora_config.hpp"
#include "engine/io/safetensors.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::io {

// The two factors of one module as float32, scale folded into B: ΔW = b · a. Row-major.
struct lora_factors {
    int rank = 0;
    std::int64_t d_in = 0;
    std::int64_t d_out = 0;
    std::vector<float> a; // [rank, d_in]
    std::vector<float> b; // [d_out, rank], already multiplied by the module's scale
};

// One adapted linear module.
struct lora_module {
    std::string path;       // "model.layers.3.self_attn.q_proj" (tensor name without "base_model.model.")
    int layer = -1;         // from "layers.N"; -1 when the path has none
    std::string short_name; // last path component: "q_proj"
    int rank = 0;           // r_i (== A rows == B columns == the config's resolved r)
    double alpha = 0.0;     // resolved lora_alpha
    double scale = 0.0;     // alpha / r, or alpha / sqrt(r) with use_rslora
    std::int64_t d_in = 0;
    std::int64_t d_out = 0;
    tensor_view a; // lora_A.weight, [rank, d_in]; valid while the adapter's `file` lives
    tensor_view b; // lora_B.weight, [d_out, rank]

    std::int64_t parameter_count() const { return a.numel() + b.numel(); }
    lora_factors factors_f32() const; // converts A and scale · B to float32
};

struct peft_load_options {
    const model_geometry* base = nullptr; // when set, every module must fit this base model exactly
    bool check_finite = true;             // reject NaN / Inf weights (one pass over the bytes)
};

struct peft_adapter {
    std::string name;          // folder name
    std::filesystem::path dir; // the folder as given
    lora_config config;
    std::vector<lora_module> modules; // by layer, then q,k,v,o,gate,up,down, then path
    std::vector<std::string> warnings;
    std::shared_ptr<const safetensors_file> file; // owns the bytes the modules' views point into

    int max_rank() const;
    std::int64_t parameter_count() const;                        // sum over modules of A and B elements
    int layer_count() const;                                     // distinct layer indices (>= 0)
    std::vector<std::string> module_names() const;               // distinct short names, canonical order
    std::optional<dtype> weight_dtype() const;                   // nullopt when modules use different dtypes
    std::uint64_t weight_bytes() const;                          // bytes of all A and B tensors
    const lora_module* find(std::string_view module_path) const; // nullptr when absent
    lora_factors factors_f32(std::size_t module_index) const {
        return modules.at(module_index).factors_f32();
    }
};

// Loads and validates the adapter in `dir`. Errors: io_error (folder unreadable), format_error (missing
// adapter_config.json or adapter_model.safetensors, bad JSON, corrupt safetensors, a lora_A without its
// lora_B), unsupported_error (see the policy above), shape_mismatch (A/B disagree, or do not fit
// `options.base`), validation_error (rank differs from the config, NaN/Inf, no linear module).
peft_adapter load_peft_adapter(const std::filesystem::path& dir, const peft_load_options& options = {});

// Module-path rules shared by the importer and the bank validation. A module path is dot-separated
// components of [A-Za-z0-9_-] (so no "..", "/", absolute or empty parts), holding exactly one
// "layers.N" with N a plain non-negative decimal below `num_layers` when that is positive, else below
// max_layer_index. Returns "" when `path` is acceptable (and sets *layer to N), else the reason.
constexpr int max_layer_index = 1 << 20;
std::string module_path_problem(std::string_view path, int num_layers = 0, int* layer = nullptr);
// "" when `name` can name an adapter folder (non-empty, at most 255 bytes, no "/", "\\" or control
// characters, not "." or ".."), else the reason.
std::string adapter_name_problem(std::string_view name);

// Largest |scale · B · A|_F accepted: its square must be finite in float32 (the compressor's error
// and norm arithmetic), i.e. about 1.8e19.
double max_update_norm();

// Canonical position of a module short name (q_proj 0 ... down_proj 6, anything else 7).
int module_order(std::string_view short_name);

} // namespace lorafleet::io
