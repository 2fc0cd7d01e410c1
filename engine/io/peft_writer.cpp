#include "engine/io/peft_writer.hpp"

#include "engine/core/error.hpp"
#include "engine/io/atomic_file.hpp"

#include <nlohmann/json.hpp>

namespace lorafleet::io {

std::string peft_config_json(const peft_adapter_spec& spec) {
    nlohmann::ordered_json j;
    j["alpha_pattern"] = nlohmann::json::object();
    j["auto_mapping"] = nullptr;
    j["base_model_name_or_path"] =
        spec.base_model.empty() ? nlohmann::json() : nlohmann::json(spec.base_model);
    j["bias"] = "none";
    j["fan_in_fan_out"] = false;
    j["inference_mode"] = true;
    j["init_lora_weights"] = true;
    j["layers_pattern"] = nullptr;
    j["layers_to_transform"] = nullptr;
    j["lora_alpha"] = spec.lora_alpha;
    j["lora_dropout"] = 0.0;
    j["modules_to_save"] = nullptr;
    j["peft_type"] = "LORA";
    j["r"] = spec.r;
    j["rank_pattern"] = nlohmann::json::object();
    j["revision"] = nullptr;
    j["target_modules"] = spec.target_modules;
    j["task_type"] = "CAUSAL_LM";
    j["use_dora"] = false;
    j["use_rslora"] = false;
    return j.dump(2) + "\n";
}

void write_peft_adapter(const std::filesystem::path& dir, const peft_adapter_spec& spec, bool overwrite) {
    if (!is_lora_float(spec.weight_dtype))
        throw usage_error(dir.string(), "adapter weights must be F32, F16 or BF16");
    if (spec.modules.empty()) throw usage_error(dir.string(), "an adapter needs at least one module");
    const auto config_path = dir / "adapter_config.json";
    const auto weights_path = dir / "adapter_model.safetensors";
    std::error_code ec;
    if (!overwrite && (std::filesystem::exists(config_path, ec) || std::filesystem::exists(weights_path, ec)))
        throw usage_error(dir.string(), "already holds an adapter (refusing to overwrite it)");

    // Encode every factor first so nothing is written when a module is inconsistent.
    std::vector<std::vector<std::byte>> storage;
    std::vector<tensor_data> tensors;
    storage.reserve(spec.modules.size() * 2);
    for (const auto& m : spec.modules) {
        const auto want_a = std::size_t(m.rank) * std::size_t(m.d_in);
        const auto want_b = std::size_t(m.d_out) * std::size_t(m.rank);
        if (m.rank != spec.r || m.a.size() != want_a || m.b.size() != want_b || m.d_in <= 0 || m.d_out <= 0)
            throw shape_mismatch(
                dir.string(), "module " + m.path + ": factors do not match rank " + std::to_string(spec.r) +
                                  " and [" + std::to_string(m.d_out) + ", " + std::to_string(m.d_in) + "]");
        const std::string prefix = "base_model.model." + m.path;
        storage.push_back(encode_f32(m.a, spec.weight_dtype));
        tensors.push_back({prefix + ".lora_A.weight", spec.weight_dtype, {m.rank, m.d_in}, storage.back()});
        storage.push_back(encode_f32(m.b, spec.weight_dtype));
        tensors.push_back({prefix + ".lora_B.weight", spec.weight_dtype, {m.d_out, m.rank}, storage.back()});
    }
    std::filesystem::create_directories(dir, ec);
    if (ec) throw io_error(dir.string(), "cannot create folder: " + ec.message());
    auto metadata = spec.metadata;
    metadata.emplace("format", "pt");
    write_safetensors(weights_path, std::move(tensors), metadata);
    write_file_atomic(config_path, peft_config_json(spec));
}

} // namespace lorafleet::io
