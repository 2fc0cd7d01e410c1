// Base-model geometry from a HuggingFace config.json (Llama / Mistral / Qwen2) and the named presets.
// Invariants of every returned geometry: all sizes are positive, num_heads % num_kv_heads == 0, and
// head_dim is the config's value or hidden_size / num_heads (which must then divide evenly).
// Error policy: unreadable file -> io_error; not JSON, missing key or wrong JSON type -> format_error
// naming the key; a value out of range (zero, negative, heads not divisible) -> validation_error naming
// the key; a model family we do not serve -> unsupported_error naming model_type / architecture.
#include "engine/io/hf_config.hpp"

#include "engine/core/error.hpp"
#include "engine/io/json_document.hpp"
#include "engine/io/regular_file.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cmath>

namespace lorafleet::io {
namespace {

using json = nlohmann::json;

// Upper bound for any size in a config: large enough for every real model (vocabularies of 256k,
// intermediate sizes of 50k), small enough that products of two sizes never overflow int64.
constexpr std::int64_t max_dimension = std::int64_t(1) << 24;
constexpr std::uintmax_t max_config_bytes = 16u << 20; // a config.json is a few kB

struct family {
    std::string_view model_type;
    std::string_view architecture;
};
constexpr std::array<family, 3> supported_families{{
    {"llama", "LlamaForCausalLM"},
    {"mistral", "MistralForCausalLM"},
    {"qwen2", "Qwen2ForCausalLM"},
}};

// Decoder-layer linear modules in the order they run inside a layer.
constexpr std::array<std::string_view, 7> linear_names{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                       "gate_proj", "up_proj", "down_proj"};

std::string supported_list() {
    std::string out;
    for (const auto& f : supported_families)
        out += (out.empty() ? "" : ", ") + std::string(f.model_type);
    return out;
}

// An integer key in [1, max_dimension]; nullopt when absent or null.
std::optional<int> get_size(const json& j, const char* key, const std::string& where) {
    const json* v = find_non_null(j, key);
    if (!v) return std::nullopt;
    if (!v->is_number_integer())
        throw format_error(where, std::string(key) + " must be an integer, got " + json_type_name(*v));
    // Non-negative literals parse as unsigned, negative ones as signed: compare each in its own type.
    const bool in_range =
        v->is_number_unsigned()
            ? v->get<std::uint64_t>() >= 1 && v->get<std::uint64_t>() <= std::uint64_t(max_dimension)
            : v->get<std::int64_t>() >= 1 && v->get<std::int64_t>() <= max_dimension;
    if (!in_range)
        throw validation_error(where,
                               std::string(key) + " must be between 1 and " + std::to_string(max_dimension));
    return static_cast<int>(v->get<std::int64_t>());
}

int require_size(const json& j, const char* key, const std::string& where) {
    if (!find_non_null(j, key)) throw format_error(where, std::string("missing required key ") + key);
    return *get_size(j, key, where);
}

// A positive finite number; `fallback` when absent or null.
double get_positive(const json& j, const char* key, double fallback, const std::string& where) {
    const json* v = find_non_null(j, key);
    if (!v) return fallback;
    if (!v->is_number())
        throw format_error(where, std::string(key) + " must be a number, got " + json_type_name(*v));
    const double d = v->get<double>();
    if (!std::isfinite(d) || d <= 0)
        throw validation_error(where, std::string(key) + " must be a positive finite number");
    return d;
}

bool get_bool(const json& j, const char* key, bool fallback, const std::string& where) {
    const json* v = find_non_null(j, key);
    if (!v) return fallback;
    if (!v->is_boolean())
        throw format_error(where, std::string(key) + " must be true or false, got " + json_type_name(*v));
    return v->get<bool>();
}

// bos/eos ids: an integer, null, or (Llama 3 style) a list of integers of which the first is used.
int get_token_id(const json& j, const char* key, const std::string& where) {
    const json* v = find_non_null(j, key);
    if (!v) return -1;
    const json* id = v;
    if (v->is_array()) {
        if (v->empty()) return -1;
        id = &(*v)[0];
    }
    if (!id->is_number_integer() || id->get<std::int64_t>() < 0 || id->get<std::int64_t>() > max_dimension)
        throw format_error(where, std::string(key) + " must be a token id (a non-negative integer), got " +
                                      (id->is_number_integer() ? std::string("one out of range")
                                                               : std::string(json_type_name(*id))));
    return static_cast<int>(id->get<std::int64_t>());
}

model_geometry make_preset(std::string name, std::string model_type, std::string architecture, int hidden,
                           int layers, int heads, int kv_heads, int intermediate, int vocab, int max_pos,
                           double rms_eps, double rope_theta, bool tie) {
    model_geometry g;
    g.name = std::move(name);
    g.model_type = std::move(model_type);
    g.architecture = std::move(architecture);
    g.hidden_size = hidden;
    g.num_layers = layers;
    g.num_heads = heads;
    g.num_kv_heads = kv_heads;
    g.head_dim = hidden / heads;
    g.intermediate_size = intermediate;
    g.vocab_size = vocab;
    g.max_position_embeddings = max_pos;
    g.rms_norm_eps = rms_eps;
    g.rope_theta = rope_theta;
    g.tie_word_embeddings = tie;
    g.bos_token_id = 1;
    g.eos_token_id = 2;
    return g;
}

std::vector<model_geometry> presets() {
    return {
        // Exactly ../shared/fixtures/models/tinystories-656k/config.json.
        make_preset("tinystories-656k", "llama", "LlamaForCausalLM", 128, 2, 8, 4, 384, 2048, 512, 1e-6,
                    10000.0, true),
        // TinyLlama/TinyLlama-1.1B-Chat-v1.0.
        make_preset("tinyllama-1.1b", "llama", "LlamaForCausalLM", 2048, 22, 32, 4, 5632, 32000, 2048, 1e-5,
                    10000.0, false),
        // mistralai/Mistral-7B-Instruct-v0.2 (no sliding window, rope_theta 1e6).
        make_preset("mistral-7b", "mistral", "MistralForCausalLM", 4096, 32, 32, 8, 14336, 32000, 32768, 1e-5,
                    1e6, false),
        // meta-llama/Llama-2-7b-hf (multi-head attention: kv heads == heads).
        make_preset("llama-2-7b", "llama", "LlamaForCausalLM", 4096, 32, 32, 32, 11008, 32000, 4096, 1e-5,
                    10000.0, false),
        // meta-llama/Meta-Llama-3-8B (GQA 32/8, vocab 128256, rope_theta 5e5, BOS/EOS 128000/128001).
        [] {
            auto g = make_preset("llama-3-8b", "llama", "LlamaForCausalLM", 4096, 32, 32, 8, 14336, 128256,
                                 8192, 1e-5, 500000.0, false);
            g.bos_token_id = 128000;
            g.eos_token_id = 128001;
            return g;
        }(),
    };
}

} // namespace

std::optional<module_shape> model_geometry::linear_shape(std::string_view module) const {
    const std::int64_t q_dim = std::int64_t(num_heads) * head_dim;
    const std::int64_t kv_dim = std::int64_t(num_kv_heads) * head_dim;
    if (module == "q_proj") return module_shape{q_dim, hidden_size};
    if (module == "k_proj" || module == "v_proj") return module_shape{kv_dim, hidden_size};
    if (module == "o_proj") return module_shape{hidden_size, q_dim};
    if (module == "gate_proj" || module == "up_proj") return module_shape{intermediate_size, hidden_size};
    if (module == "down_proj") return module_shape{hidden_size, intermediate_size};
    return std::nullopt;
}

std::vector<std::string> model_geometry::linear_modules() const {
    return {linear_names.begin(), linear_names.end()};
}

model_geometry parse_hf_config(std::string_view json_text, const std::string& where) {
    const json j = parse_json_object<json>(json_text, where, "a config.json");

    model_geometry g;
    g.name = where;
    if (const json* a = find_non_null(j, "architectures")) {
        if (!a->is_array()) throw format_error(where, "architectures must be a list of strings");
        for (const auto& e : *a)
            if (!e.is_string()) throw format_error(where, "architectures must be a list of strings");
        if (!a->empty()) g.architecture = (*a)[0].get<std::string>();
    }
    if (const json* mt = find_non_null(j, "model_type")) {
        if (!mt->is_string())
            throw format_error(where, "model_type must be a string, got " + std::string(json_type_name(*mt)));
        g.model_type = mt->get<std::string>();
        bool known = false;
        for (const auto& f : supported_families)
            known = known || f.model_type == g.model_type;
        if (!known)
            throw unsupported_error(
                where, "model_type is not one this program serves (supported: " + supported_list() + ")");
    } else {
        // Old or hand-written configs: fall back to the architecture name.
        if (g.architecture.empty()) throw format_error(where, "missing required key model_type");
        for (const auto& f : supported_families)
            if (f.architecture == g.architecture) g.model_type = std::string(f.model_type);
        if (g.model_type.empty())
            throw unsupported_error(where, "architectures[0] is not one this program serves (supported: " +
                                               supported_list() + ")");
    }
    if (g.architecture.empty())
        for (const auto& f : supported_families)
            if (f.model_type == g.model_type) g.architecture = std::string(f.architecture);

    g.hidden_size = require_size(j, "hidden_size", where);
    g.num_layers = require_size(j, "num_hidden_layers", where);
    g.num_heads = require_size(j, "num_attention_heads", where);
    g.intermediate_size = require_size(j, "intermediate_size", where);
    g.vocab_size = require_size(j, "vocab_size", where);
    g.num_kv_heads = get_size(j, "num_key_value_heads", where).value_or(g.num_heads);
    if (g.num_heads % g.num_kv_heads != 0)
        throw validation_error(where, "num_attention_heads (" + std::to_string(g.num_heads) +
                                          ") is not a multiple of num_key_value_heads (" +
                                          std::to_string(g.num_kv_heads) + ")");
    if (auto hd = get_size(j, "head_dim", where)) {
        g.head_dim = *hd;
    } else {
        if (g.hidden_size % g.num_heads != 0)
            throw validation_error(where, "hidden_size (" + std::to_string(g.hidden_size) +
                                              ") is not a multiple of num_attention_heads (" +
                                              std::to_string(g.num_heads) + ") and there is no head_dim");
        g.head_dim = g.hidden_size / g.num_heads;
    }
    g.max_position_embeddings = get_size(j, "max_position_embeddings", where).value_or(0);
    g.rms_norm_eps = get_positive(j, "rms_norm_eps", 1e-6, where);
    g.rope_theta = get_positive(j, "rope_theta", 10000.0, where);
    if (const json* rs = find_non_null(j, "rope_scaling")) {
        if (!rs->is_object()) throw format_error(where, "rope_scaling must be an object or null");
        g.rope_scaling = true;
    }
    g.tie_word_embeddings = get_bool(j, "tie_word_embeddings", false, where);
    // Qwen2 always has biases on q/k/v and its config carries no attention_bias key.
    g.attention_bias = g.model_type == "qwen2" ? true : get_bool(j, "attention_bias", false, where);
    g.bos_token_id = get_token_id(j, "bos_token_id", where);
    g.eos_token_id = get_token_id(j, "eos_token_id", where);
    return g;
}

model_geometry read_hf_config(const std::filesystem::path& path) {
    std::filesystem::path file = path;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) file = path / "config.json";
    if (!std::filesystem::exists(file, ec)) throw io_error(path_string(file), "no such file");
    return parse_hf_config(read_text_file(file, max_config_bytes, "config.json"), path_string(file));
}

std::vector<std::string> geometry_preset_names() {
    std::vector<std::string> out;
    for (const auto& g : presets())
        out.push_back(g.name);
    return out;
}

std::optional<model_geometry> geometry_preset(std::string_view name) {
    for (auto& g : presets())
        if (g.name == name) return g;
    return std::nullopt;
}

model_geometry resolve_geometry(std::string_view name_or_path) {
    if (auto g = geometry_preset(name_or_path)) return *g;
    const std::filesystem::path p{std::string(name_or_path)};
    std::error_code ec;
    if (!name_or_path.empty()) {
        if (std::filesystem::is_regular_file(p, ec)) return read_hf_config(p);
        if (std::filesystem::is_directory(p, ec) && std::filesystem::is_regular_file(p / "config.json", ec))
            return read_hf_config(p / "config.json");
    }
    std::string names;
    for (const auto& n : geometry_preset_names())
        names += (names.empty() ? "" : ", ") + n;
    throw usage_error(std::string(name_or_path),
                      "not a preset (" + names + "), a config.json or a folder holding one");
}

} // namespace lorafleet::io
