// Base-model geometry from a HuggingFace `config.json` (Llama / Mistral / Qwen2 family), plus named
// presets for synthetic fleets and benchmarks. The geometry decides every adapted module's shape.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::io {

struct module_shape {
    std::int64_t d_out = 0; // rows of W (PEFT lora_B is [d_out, r])
    std::int64_t d_in = 0;  // columns of W (PEFT lora_A is [r, d_in])
};

struct model_geometry {
    std::string name;         // preset name or the config's path
    std::string model_type;   // "llama", "mistral", "qwen2"
    std::string architecture; // architectures[0], e.g. "LlamaForCausalLM"
    int hidden_size = 0;
    int num_layers = 0;
    int num_heads = 0;
    int num_kv_heads = 0;
    int head_dim = 0; // config's head_dim, else hidden_size / num_heads
    int intermediate_size = 0;
    int vocab_size = 0;
    int max_position_embeddings = 0;
    double rms_norm_eps = 1e-6;
    double rope_theta = 10000.0;
    bool rope_scaling = false; // a non-null rope_scaling entry is present
    bool tie_word_embeddings = false;
    bool attention_bias = false;
    int bos_token_id = -1;
    int eos_token_id = -1;

    // Shape of a decoder-layer linear module by short name: q_proj, k_proj, v_proj, o_proj, gate_proj,
    // up_proj, down_proj. nullopt for names this family does not have.
    std::optional<module_shape> linear_shape(std::string_view module) const;
    std::vector<std::string> linear_modules() const; // the seven names above, in layer order
};

// Parses config.json text; format_error / unsupported_error name `where`.
model_geometry parse_hf_config(std::string_view json_text, const std::string& where);
// Reads `path` (a config.json, or a folder holding one).
model_geometry read_hf_config(const std::filesystem::path& path);

std::vector<std::string> geometry_preset_names(); // "tinystories-656k", "tinyllama-1.1b", "mistral-7b", ...
std::optional<model_geometry> geometry_preset(std::string_view name);
// A preset name, a config.json, or a model folder; usage-level errors name the argument.
model_geometry resolve_geometry(std::string_view name_or_path);

} // namespace lorafleet::io
