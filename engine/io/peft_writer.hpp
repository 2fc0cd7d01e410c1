// Writes standard HuggingFace PEFT LoRA adapter folders (adapter_config.json + adapter_model.safetensors)
// that PEFT and vLLM load unchanged. Used by the synthetic-fleet generator and by `export-peft`, which
// rebuilds adapters from a compressed bank. Both files are written atomically; an existing adapter in
// the target folder is only replaced when `overwrite` is set.
#pragma once

#include "engine/io/safetensors.hpp"

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace lorafleet::io {

// One module's factors, float32 row-major; the file stores them in `peft_adapter_spec::dtype`.
struct peft_module_factors {
    std::string path; // "model.layers.3.self_attn.q_proj"
    int rank = 0;
    std::int64_t d_in = 0;
    std::int64_t d_out = 0;
    std::span<const float> a; // [rank, d_in]   -> lora_A.weight
    std::span<const float> b; // [d_out, rank]  -> lora_B.weight (PEFT multiplies by lora_alpha / r)
};

struct peft_adapter_spec {
    int r = 0;                                   // config r (every module's rank must equal it)
    double lora_alpha = 0.0;                     // scale = lora_alpha / r
    std::string base_model;                      // base_model_name_or_path ("" -> null)
    std::vector<std::string> target_modules;     // short names, e.g. q_proj, v_proj
    dtype weight_dtype = dtype::F32;             // F32, F16 or BF16
    std::map<std::string, std::string> metadata; // safetensors __metadata__ ("format": "pt" is added)
    std::vector<peft_module_factors> modules;
};

// The adapter_config.json text PEFT writes for a plain LoRA (same keys, PEFT's defaults).
std::string peft_config_json(const peft_adapter_spec& spec);

// Writes `dir`/adapter_config.json and `dir`/adapter_model.safetensors, creating `dir`. Throws
// usage_error when `dir` already holds an adapter and !overwrite, shape_mismatch when a module's sizes
// disagree with its spans or with `r`, io_error when writing fails (previous files are kept).
void write_peft_adapter(const std::filesystem::path& dir, const peft_adapter_spec& spec,
                        bool overwrite = false);

} // namespace lorafleet::io
