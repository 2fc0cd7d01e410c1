// Test helper: writes crafted PEFT LoRA adapter folders (adapter_config.json + adapter_model.safetensors)
// with knobs to break them (missing factor, mismatched ranks, NaN, odd dtypes, extra tensors, bad JSON,
// pickle-only). Tensor values follow a deterministic pattern (pattern_value) unless given explicitly, so
// tests can predict every weight without reading the file back.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/io/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lorafleet::test {

// One tensor written verbatim (DoRA magnitudes, embedding LoRA, modules_to_save weights, junk).
struct crafted_tensor {
    std::string name; // full tensor name, e.g. "base_model.model.lm_head.weight"
    io::dtype type = io::dtype::F32;
    std::vector<std::int64_t> shape;
    std::vector<float> values; // empty: pattern_value; ignored for non-float dtypes (written as zeros)
};

// One linear module's lora_A [rank, d_in] and lora_B [d_out, rank_b].
struct crafted_module {
    std::string path; // "model.layers.0.self_attn.q_proj"
    std::int64_t d_in = 0;
    std::int64_t d_out = 0;
    int rank = 8;
    int rank_b = -1; // columns of lora_B; -1: same as rank
    io::dtype type = io::dtype::F32;
    std::optional<io::dtype> type_b; // lora_B's dtype when it should differ from lora_A's
    bool with_a = true;
    bool with_b = true;
    std::string adapter_name;      // "" -> ".lora_A.weight"; "default" -> ".lora_A.default.weight"
    std::optional<float> poison_a; // written into A[0] (NaN, Inf)
    std::optional<float> poison_b; // written into B[0]
    std::vector<float> a_values;   // explicit A (row-major [rank, d_in]); empty: pattern
    std::vector<float> b_values;   // explicit B (row-major [d_out, rank_b]); empty: pattern
};

struct crafted_adapter {
    nlohmann::ordered_json config;
    std::vector<crafted_module> modules;
    std::vector<crafted_tensor> extra_tensors;
    bool write_config = true;
    bool write_weights = true;              // adapter_model.safetensors
    bool write_bin = false;                 // a (fake) adapter_model.bin pickle checkpoint
    std::optional<std::string> config_text; // written instead of `config` (broken JSON)
};

// A valid LoRA adapter_config.json as PEFT writes it.
nlohmann::ordered_json lora_config_json(int r, double alpha, const std::vector<std::string>& target_modules,
                                        const std::string& base_model = "test/base-model");

// An adapter on `modules` (short names) of every layer of `base` (or the first `layers` layers), rank r,
// with its matching config.
crafted_adapter crafted_llama_adapter(const io::model_geometry& base, const std::vector<std::string>& modules,
                                      int r, double alpha, int layers = -1);

// Writes the folder (created if needed). Tensors are named "base_model.model.<path>.lora_A[.name].weight".
void write_crafted_adapter(const std::filesystem::path& dir, const crafted_adapter& spec);

// The deterministic fill: values in [-0.5, 0.5], exact in BF16 and F16, seeded by the tensor name.
float pattern_value(const std::string& tensor_name, std::size_t index);
std::string lora_tensor_name(const std::string& module_path, char factor,
                             const std::string& adapter_name = "");

} // namespace lorafleet::test
