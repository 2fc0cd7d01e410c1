// Loading a Llama-family HuggingFace folder into weights in their stored dtype (see model_weights.hpp for the
// invariants). Sections: config checks beyond the geometry, locating tensors across shards and aliases,
// converting them, and assembling the layers.
#include "engine/serve/model/model_weights.hpp"

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/io/regular_file.hpp"
#include "engine/io/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

namespace lorafleet::serve {

static_assert(std::endian::native == std::endian::little, "safetensors data is used in place");

namespace {

using json = nlohmann::json;

std::string read_small_text(const std::filesystem::path& path) {
    return io::read_text_file(path, io::max_json_file_bytes, "JSON file"); // regular files only, bounded
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// ---- Config keys the geometry does not carry ----------------------------------------------------------
// Each of these changes the model's output; a value we do not implement is refused, never ignored.
struct config_extras {
    int sliding_window = 0; // 0: full attention
};

config_extras check_config(const std::filesystem::path& config_path, const io::model_geometry& g) {
    const std::string where = path_string(config_path);
    if (g.rope_scaling)
        throw unsupported_error(where,
                                "rope_scaling is set: scaled RoPE (linear, dynamic, YaRN, llama3) is not "
                                "implemented, and ignoring it would give wrong output");
    const json j = json::parse(read_small_text(config_path), nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw format_error(where, "not a JSON object");
    for (const char* key : {"hidden_act", "hidden_activation"}) {
        auto it = j.find(key);
        if (it != j.end() && !it->is_null() && *it != "silu")
            throw unsupported_error(where, std::string(key) + " is not supported (only silu)");
    }
    if (auto it = j.find("mlp_bias"); it != j.end() && it->is_boolean() && it->get<bool>())
        throw unsupported_error(where, "mlp_bias true is not supported");
    if (auto it = j.find("quantization_config"); it != j.end() && !it->is_null())
        throw unsupported_error(where,
                                "quantized checkpoints are not supported (quantization_config is set)");

    config_extras x;
    auto window = j.find("sliding_window");
    const bool windowed = g.model_type == "mistral" ||
                          (g.model_type == "qwen2" && j.value("use_sliding_window", false) == true);
    if (windowed && window != j.end() && window->is_number_integer() && window->get<std::int64_t>() > 0)
        x.sliding_window = static_cast<int>(std::min<std::int64_t>(window->get<std::int64_t>(), 1 << 30));
    return x;
}

} // namespace

// ---- Tensor lookup and conversion -----------------------------------------------------------------------
class model_loader {
public:
    model_loader(const std::filesystem::path& dir, const model_load_options& options)
        : m_dir(dir), m_options(options) {}

    std::shared_ptr<const model_weights> load() {
        const auto config_path = m_dir / "config.json";
        std::error_code ec;
        if (!std::filesystem::is_regular_file(config_path, ec))
            throw io_error(path_string(m_dir), "not a model folder: no config.json");
        auto m = std::shared_ptr<model_weights>(new model_weights());
        m->m_folder = m_dir;
        m->m_requested = m_options.dtype;
        m->m_geometry = io::read_hf_config(config_path);
        const io::model_geometry& g = m->m_geometry;
        const config_extras extras = check_config(config_path, g);
        m->m_max_context = g.max_position_embeddings > 0 ? g.max_position_embeddings : (1 << 30);
        if (extras.sliding_window > 0) m->m_max_context = std::min(m->m_max_context, extras.sliding_window);

        open_files();
        for (auto& f : m_files)
            m->m_keep_alive.push_back(f); // tensors are used in place
        m_out = m.get();
        const std::int64_t d = g.hidden_size;

        // Embeddings: a tied checkpoint may store either name (safetensors' de-duplication keeps one and
        // may record the other in __metadata__, which find() follows).
        const std::string embed_name = "model.embed_tokens.weight", head_name = "lm_head.weight";
        if (g.tie_word_embeddings) {
            const bool has_embed = find(embed_name) != nullptr;
            m->embed = matrix(has_embed ? embed_name : head_name, g.vocab_size, d);
            m->lm_head = m->embed;
        } else {
            m->embed = matrix(embed_name, g.vocab_size, d);
            m->lm_head = matrix(head_name, g.vocab_size, d);
        }
        m->final_norm = vector("model.norm.weight", d);

        m->layers.resize(static_cast<std::size_t>(g.num_layers));
        for (int l = 0; l < g.num_layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            layer_weights& L = m->layers[static_cast<std::size_t>(l)];
            L.input_norm = vector(p + "input_layernorm.weight", d);
            L.post_attention_norm = vector(p + "post_attention_layernorm.weight", d);
            for (int k = 0; k < module_kind_count; ++k) {
                const auto mk = static_cast<module_kind>(k);
                const bool attn = k <= static_cast<int>(module_kind::o_proj);
                const std::string name = p + (attn ? "self_attn." : "mlp.") + std::string(module_name(mk));
                const auto shape = g.linear_shape(module_name(mk));
                L.linear[k].weight = matrix(name + ".weight", shape->d_out, shape->d_in);
                // q/k/v biases are required when the config declares them (Qwen2, attention_bias); any
                // other bias is used when present, since leaving it out would change the output.
                const bool qkv = k <= static_cast<int>(module_kind::v_proj);
                if ((qkv && g.attention_bias) || find(name + ".bias"))
                    L.linear[k].bias = vector(name + ".bias", shape->d_out);
            }
        }
        m_out = nullptr;
        return m;
    }

private:
    // Opens model.safetensors, or every shard named by model.safetensors.index.json.
    void open_files() {
        std::error_code ec;
        const auto index_path = m_dir / "model.safetensors.index.json";
        const auto single_path = m_dir / "model.safetensors";
        if (std::filesystem::is_regular_file(index_path, ec)) {
            const std::string where = path_string(index_path);
            const json j = json::parse(read_small_text(index_path), nullptr, false);
            if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
                !j["weight_map"].is_object())
                throw format_error(where, "expected a JSON object with a weight_map object");
            std::map<std::string, std::size_t> shard_index;
            for (const auto& [name, file] : j["weight_map"].items()) {
                if (!file.is_string())
                    throw format_error(where, "weight_map[" + name + "] must be a file name");
                const std::string f = file.get<std::string>();
                // Shards live beside the index: a path would let an index point anywhere on disk.
                if (f.empty() || f.find('/') != std::string::npos || f.find('\\') != std::string::npos ||
                    f == "." || f == "..")
                    throw format_error(where, "weight_map[" + name + "] is not a plain file name: " + f);
                auto [it, added] = shard_index.emplace(f, m_files.size());
                if (added) m_files.push_back(io::safetensors_file::open(m_dir / f));
                m_shard_of.emplace(name, it->second);
            }
        } else if (std::filesystem::is_regular_file(single_path, ec)) {
            m_files.push_back(io::safetensors_file::open(single_path));
        } else if (std::filesystem::exists(m_dir / "pytorch_model.bin", ec)) {
            throw unsupported_error(path_string(m_dir),
                                    "pickle checkpoints (pytorch_model.bin) are not supported: "
                                    "convert the model to safetensors");
        } else {
            throw io_error(path_string(m_dir), "no model.safetensors or model.safetensors.index.json");
        }
    }

    // A tensor by name: through the shard index, in any file, or through a __metadata__ alias.
    const io::tensor_view* find(const std::string& name) const {
        if (auto it = m_shard_of.find(name); it != m_shard_of.end())
            if (const auto* t = m_files[it->second]->find(name)) return t;
        for (const auto& f : m_files)
            if (const auto* t = f->find(name)) return t;
        for (const auto& f : m_files) {
            auto alias = f->metadata().find(name);
            if (alias == f->metadata().end() || alias->second == name) continue;
            for (const auto& g : m_files)
                if (const auto* t = g->find(alias->second)) return t;
        }
        return nullptr;
    }

    // Vectors (norms, biases) are widened to float32; matrices keep their stored dtype unless the options
    // ask for another. A tensor already in its target dtype and aligned for it is used in place.
    weight_tensor get(const std::string& name, std::vector<std::int64_t> shape) {
        const io::tensor_view* t = find(name);
        const std::string where = path_string(m_dir);
        if (!t) throw shape_mismatch(where, "tensor " + name + " " + shape_string(shape) + " is missing");
        if (t->shape() != shape)
            throw shape_mismatch(where, "tensor " + name + " has shape " + shape_string(t->shape()) +
                                            ", the config implies " + shape_string(shape));
        if (auto it = m_done.find(t); it != m_done.end()) return it->second;
        weight_dtype stored;
        switch (t->type()) {
        case io::dtype::F32:
            stored = weight_dtype::f32;
            break;
        case io::dtype::F16:
            stored = weight_dtype::f16;
            break;
        case io::dtype::BF16:
            stored = weight_dtype::bf16;
            break;
        default:
            throw unsupported_error(where, "tensor " + name + " has dtype " +
                                               std::string(io::dtype_name(t->type())) +
                                               "; only F32, F16 and BF16 weights are supported");
        }
        weight_tensor w;
        w.rows = shape[0];
        w.cols = shape.size() > 1 ? shape[1] : 1;
        w.dtype = shape.size() == 1 ? weight_dtype::f32 : target_dtype(stored);
        const auto addr = reinterpret_cast<std::uintptr_t>(t->bytes.data());
        if (w.dtype == stored && addr % w.element_size() == 0) {
            w.data = t->bytes.data(); // the mapping outlives the model
        } else {
            // Floats, so the buffer is aligned for any dtype held.
            const std::size_t bytes = std::size_t(w.bytes());
            auto buffer = std::make_shared<std::vector<float>>((bytes + sizeof(float) - 1) / sizeof(float));
            convert(t->bytes.data(), stored, w.dtype, std::size_t(w.numel()), buffer->data());
            w.data = buffer->data();
            m_out->m_resident_bytes += buffer->size() * sizeof(float);
            m_out->m_keep_alive.push_back(std::move(buffer));
        }
        m_done.emplace(t, w);
        return w;
    }

    weight_dtype target_dtype(weight_dtype stored) const {
        switch (m_options.dtype) {
        case weight_dtype_choice::keep_stored:
            return stored;
        case weight_dtype_choice::f32:
            return weight_dtype::f32;
        case weight_dtype_choice::bf16:
            return weight_dtype::bf16;
        case weight_dtype_choice::f16:
            return weight_dtype::f16;
        }
        return stored;
    }

    // `count` elements from `src` (stored dtype `from`, any alignment) into `dst` as `to`, through a small
    // chunk: never a whole-tensor float32 temporary.
    static void convert(const std::byte* src, weight_dtype from, weight_dtype to, std::size_t count,
                        void* dst) {
        const std::size_t in_size = weight_dtype_size(from), out_size = weight_dtype_size(to);
        if (from == to) {
            std::memcpy(dst, src, count * in_size);
            return;
        }
        constexpr std::size_t chunk = 4096;
        float raw[chunk];  // the stored bytes, realigned (room for `chunk` 4-byte elements)
        float wide[chunk]; // as float32
        auto* out = static_cast<std::byte*>(dst);
        for (std::size_t first = 0; first < count; first += chunk) {
            const std::size_t n = std::min(chunk, count - first);
            std::memcpy(raw, src + first * in_size, n * in_size);
            widen_to_f32(raw, from, n, wide);
            if (to == weight_dtype::f32) {
                std::memcpy(out + first * out_size, wide, n * sizeof(float));
                continue;
            }
            std::uint16_t narrow[chunk];
            for (std::size_t i = 0; i < n; ++i)
                narrow[i] = to == weight_dtype::bf16 ? f32_to_bf16(wide[i]) : f32_to_f16(wide[i]);
            std::memcpy(out + first * out_size, narrow, n * out_size);
        }
    }

    weight_tensor matrix(const std::string& name, std::int64_t rows, std::int64_t cols) {
        return get(name, {rows, cols});
    }
    weight_tensor vector(const std::string& name, std::int64_t n) { return get(name, {n}); }

    std::filesystem::path m_dir;
    std::vector<std::shared_ptr<const io::safetensors_file>> m_files;
    std::map<std::string, std::size_t> m_shard_of; // tensor name -> index into m_files (sharded only)
    std::map<const io::tensor_view*, weight_tensor> m_done;
    model_weights* m_out = nullptr; // the model being assembled (receives converted buffers)
    model_load_options m_options;
};

// ---- model_weights ---------------------------------------------------------------------------------------
model_weights::~model_weights() = default;

std::shared_ptr<const model_weights> model_weights::load(const std::filesystem::path& dir,
                                                         const model_load_options& options) {
    return model_loader(dir, options).load();
}

weight_dtype_choice parse_weight_dtype_choice(std::string_view text, std::string_view option) {
    if (text == "auto") return weight_dtype_choice::keep_stored;
    if (text == "float32" || text == "fp32" || text == "f32") return weight_dtype_choice::f32;
    if (text == "bfloat16" || text == "bf16") return weight_dtype_choice::bf16;
    if (text == "float16" || text == "fp16" || text == "f16") return weight_dtype_choice::f16;
    throw usage_error(std::string(option), "expected auto, float32, bfloat16 or float16");
}

std::string_view weight_dtype_choice_name(weight_dtype_choice c) {
    switch (c) {
    case weight_dtype_choice::keep_stored:
        return "auto";
    case weight_dtype_choice::f32:
        return "float32";
    case weight_dtype_choice::bf16:
        return "bfloat16";
    case weight_dtype_choice::f16:
        return "float16";
    }
    return "auto";
}

std::uint64_t model_weights::parameter_bytes() const {
    std::uint64_t n = final_norm.bytes();
    n += lm_head.bytes(); // the embedding reads one row per token: not counted
    for (const auto& L : layers) {
        n += L.input_norm.bytes() + L.post_attention_norm.bytes();
        for (const auto& lin : L.linear)
            n += lin.weight.bytes() + lin.bias.bytes();
    }
    return n;
}

} // namespace lorafleet::serve
