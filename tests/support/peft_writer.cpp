// Writes crafted PEFT adapter folders for tests; see peft_writer.hpp. Goes through the engine's own
// write_safetensors so the files are exactly what the reader validates.
#include "tests/support/peft_writer.hpp"

#include <cstring>
#include <fstream>
#include <stdexcept>

namespace lorafleet::test {
namespace {

std::int64_t numel(const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    for (auto d : shape)
        n *= d;
    return n;
}

// Bytes of one tensor: explicit values or the pattern for float dtypes, zeros for anything else.
std::vector<std::byte> tensor_bytes(const std::string& name, io::dtype type,
                                    const std::vector<std::int64_t>& shape,
                                    const std::vector<float>& explicit_values, std::optional<float> poison) {
    const auto n = static_cast<std::size_t>(numel(shape));
    if (!io::is_lora_float(type)) return std::vector<std::byte>(n * io::dtype_size(type), std::byte{0});
    std::vector<float> values = explicit_values;
    if (values.empty()) {
        values.resize(n);
        for (std::size_t i = 0; i < n; ++i)
            values[i] = pattern_value(name, i);
    }
    if (values.size() != n) throw std::invalid_argument("peft_writer: wrong value count for " + name);
    if (poison && n > 0) values[0] = *poison;
    return io::encode_f32(values, type);
}

void write_text(const std::filesystem::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out) throw std::runtime_error("peft_writer: cannot write " + path.string());
}

} // namespace

float pattern_value(const std::string& tensor_name, std::size_t index) {
    std::uint32_t h = 2166136261u; // FNV-1a of the name, then a multiplicative mix with the index
    for (unsigned char c : tensor_name)
        h = (h ^ c) * 16777619u;
    const std::uint32_t x = (h ^ std::uint32_t(index * 2654435761u)) * 2246822519u;
    // 1/256 steps in [-0.5, 0.5]: representable exactly in BF16 (8 bits of mantissa) and F16.
    return float(int((x >> 8) % 257) - 128) / 256.0f;
}

std::string lora_tensor_name(const std::string& module_path, char factor, const std::string& adapter_name) {
    return "base_model.model." + module_path + ".lora_" + std::string(1, factor) +
           (adapter_name.empty() ? "" : "." + adapter_name) + ".weight";
}

nlohmann::ordered_json lora_config_json(int r, double alpha, const std::vector<std::string>& target_modules,
                                        const std::string& base_model) {
    return nlohmann::ordered_json{{"alpha_pattern", nlohmann::ordered_json::object()},
                                  {"base_model_name_or_path", base_model},
                                  {"bias", "none"},
                                  {"fan_in_fan_out", false},
                                  {"inference_mode", true},
                                  {"layers_to_transform", nullptr},
                                  {"lora_alpha", alpha},
                                  {"lora_bias", false},
                                  {"lora_dropout", 0.05},
                                  {"modules_to_save", nullptr},
                                  {"peft_type", "LORA"},
                                  {"r", r},
                                  {"rank_pattern", nlohmann::ordered_json::object()},
                                  {"target_modules", target_modules},
                                  {"task_type", "CAUSAL_LM"},
                                  {"use_dora", false},
                                  {"use_rslora", false}};
}

crafted_adapter crafted_llama_adapter(const io::model_geometry& base, const std::vector<std::string>& modules,
                                      int r, double alpha, int layers) {
    crafted_adapter spec;
    spec.config = lora_config_json(r, alpha, modules);
    const int n_layers = layers < 0 ? base.num_layers : layers;
    for (int l = 0; l < n_layers; ++l)
        for (const auto& m : modules) {
            const auto shape = base.linear_shape(m);
            if (!shape) throw std::invalid_argument("peft_writer: unknown module " + m);
            crafted_module s;
            const bool attn = m == "q_proj" || m == "k_proj" || m == "v_proj" || m == "o_proj";
            s.path = "model.layers." + std::to_string(l) + (attn ? ".self_attn." : ".mlp.") + m;
            s.d_in = shape->d_in;
            s.d_out = shape->d_out;
            s.rank = r;
            spec.modules.push_back(std::move(s));
        }
    return spec;
}

void write_crafted_adapter(const std::filesystem::path& dir, const crafted_adapter& spec) {
    std::filesystem::create_directories(dir);
    if (spec.write_config)
        write_text(dir / "adapter_config.json", spec.config_text ? *spec.config_text : spec.config.dump(2));
    if (spec.write_bin)
        write_text(dir / "adapter_model.bin",
                   "PK\x03\x04 (zip magic of a torch.save file; not a real pickle)");
    if (!spec.write_weights) return;

    std::vector<std::vector<std::byte>> buffers; // owned bytes; tensor_data only holds spans
    std::vector<io::tensor_data> tensors;
    buffers.reserve(2 * spec.modules.size() + spec.extra_tensors.size());
    auto add = [&](std::string name, io::dtype type, std::vector<std::int64_t> shape,
                   const std::vector<float>& values, std::optional<float> poison) {
        buffers.push_back(tensor_bytes(name, type, shape, values, poison));
        tensors.push_back({std::move(name), type, std::move(shape), buffers.back()});
    };
    for (const auto& m : spec.modules) {
        const int rank_b = m.rank_b < 0 ? m.rank : m.rank_b;
        if (m.with_a)
            add(lora_tensor_name(m.path, 'A', m.adapter_name), m.type, {m.rank, m.d_in}, m.a_values,
                m.poison_a);
        if (m.with_b)
            add(lora_tensor_name(m.path, 'B', m.adapter_name), m.type_b.value_or(m.type), {m.d_out, rank_b},
                m.b_values, m.poison_b);
    }
    for (const auto& t : spec.extra_tensors)
        add(t.name, t.type, t.shape, t.values, std::nullopt);
    io::write_safetensors(dir / "adapter_model.safetensors", std::move(tensors), {{"format", "pt"}});
}

} // namespace lorafleet::test
