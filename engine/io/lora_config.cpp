// adapter_config.json parsing and PEFT's per-module rules. The JSON is read with nlohmann::ordered_json
// because rank_pattern / alpha_pattern are matched in file key order (first match wins). Regexes are
// ECMAScript (std::regex); Python-only syntax such as (?P<name>...) is reported as an invalid regex.
#include "engine/io/lora_config.hpp"

#include "engine/core/error.hpp"
#include "engine/io/json_document.hpp"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

namespace lorafleet::io {
namespace {

using json = nlohmann::ordered_json;

constexpr std::uintmax_t max_config_bytes = 16u << 20; // an adapter_config.json is a few kB

[[noreturn]] void wrong_type(const std::string& where, const std::string& key, const char* expected,
                             const json& got) {
    std::string shown = got.dump();
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    throw format_error(where, key + " must be " + expected + ", got " + shown);
}

std::regex compile_regex(const std::string& pattern, const std::string& where, const std::string& key) {
    try {
        return std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        throw format_error(where,
                           key + ": '" + pattern + "' is not a valid regular expression (" + e.what() + ")");
    }
}

// std::regex can throw at match time on pathological patterns (error_complexity / error_stack).
bool regex_full_match(std::string_view text, const std::string& pattern, const std::string& where) {
    try {
        const std::regex re(pattern, std::regex::ECMAScript);
        return std::regex_match(text.begin(), text.end(), re);
    } catch (const std::regex_error& e) {
        throw format_error(where, "regular expression '" + pattern + "' failed: " + e.what());
    }
}

// PEFT's pattern-key rule: key K applies to a path when (.*\.)?(K)$ matches the whole path.
std::string pattern_regex(const std::string& key) {
    return "(.*\\.)?(" + key + ")$";
}

bool get_bool(const json& j, const char* key, bool fallback, const std::string& where) {
    const json* v = find_non_null(j, key);
    if (!v) return fallback;
    if (!v->is_boolean()) wrong_type(where, key, "true or false", *v);
    return v->get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& fallback,
                       const std::string& where) {
    const json* v = find_non_null(j, key);
    if (!v) return fallback;
    if (!v->is_string()) wrong_type(where, key, "a string", *v);
    return v->get<std::string>();
}

// A positive integer that fits an int (ranks).
int positive_int(const json& v, const std::string& where, const std::string& key) {
    if (!v.is_number_integer()) wrong_type(where, key, "a positive integer", v);
    // Non-negative literals parse as unsigned, negative ones as signed.
    const bool fits = v.is_number_unsigned()
                          ? v.get<std::uint64_t>() <= std::uint64_t(std::numeric_limits<int>::max())
                          : true;
    const std::int64_t value = fits ? v.get<std::int64_t>() : 0;
    if (value < 1 || value > std::numeric_limits<int>::max())
        throw validation_error(where, key + " must be a positive integer, got " + v.dump());
    return static_cast<int>(value);
}

double finite_number(const json& v, const std::string& where, const std::string& key) {
    if (!v.is_number()) wrong_type(where, key, "a number", v);
    const double d = v.get<double>();
    if (!std::isfinite(d)) throw format_error(where, key + " must be a finite number");
    return d;
}

std::vector<std::string> string_list(const json& v, const std::string& where, const std::string& key) {
    if (!v.is_array()) wrong_type(where, key, "a list of strings", v);
    std::vector<std::string> out;
    for (const auto& e : v) {
        if (!e.is_string()) wrong_type(where, key, "a list of strings", v);
        out.push_back(e.get<std::string>());
    }
    return out;
}

module_selector get_selector(const json& j, const char* key, const std::string& where) {
    module_selector s;
    const json* v = find_non_null(j, key);
    if (!v) return s;
    if (v->is_string()) {
        s.type = module_selector::kind::regex;
        s.regex = v->get<std::string>();
        compile_regex(s.regex, where, key);
    } else if (v->is_array()) {
        s.type = module_selector::kind::names;
        s.names = string_list(*v, where, key);
    } else {
        wrong_type(where, key, "a list of strings, a regex string or null", *v);
    }
    return s;
}

std::string read_text(const std::filesystem::path& path) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) throw io_error(path_string(path), "cannot read: " + ec.message());
    if (size > max_config_bytes)
        throw format_error(path_string(path),
                           "file is " + std::to_string(size) + " bytes, too large for a config");
    std::ifstream in(path, std::ios::binary);
    if (!in) throw io_error(path_string(path), "cannot open for reading");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw io_error(path_string(path), "read failed");
    return ss.str();
}

} // namespace

bool module_selector::matches(std::string_view module_path) const {
    switch (type) {
    case kind::none:
        return false;
    case kind::regex:
        return regex_full_match(module_path, regex, "");
    case kind::names:
        for (const auto& t : names) {
            if (module_path == t) return true;
            if (module_path.size() > t.size() && module_path.ends_with(t) &&
                module_path[module_path.size() - t.size() - 1] == '.')
                return true;
        }
        return false;
    }
    return false;
}

bool lora_config::targets(std::string_view module_path) const {
    // "all-linear" is PEFT's shorthand for every linear layer but the output head.
    const bool all_linear =
        target_modules.type == module_selector::kind::regex && target_modules.regex == "all-linear";
    if (all_linear) {
        if (module_path == "lm_head" || module_path.ends_with(".lm_head")) return false;
    } else if (target_modules.type != module_selector::kind::none) {
        try {
            if (!target_modules.matches(module_path)) return false;
        } catch (const format_error& e) {
            throw format_error(source, std::string("target_modules: ") + e.what());
        }
    }
    try {
        if (exclude_modules.matches(module_path)) return false;
    } catch (const format_error& e) {
        throw format_error(source, std::string("exclude_modules: ") + e.what());
    }
    if (layers_to_transform) {
        const int layer = module_layer_index(module_path);
        if (layer < 0) return false; // PEFT: no layer index means not found
        bool listed = false;
        for (int l : *layers_to_transform)
            listed = listed || l == layer;
        if (!listed) return false;
    }
    return true;
}

lora_module_scale lora_config::scale_for(std::string_view module_path) const {
    lora_module_scale s{r, lora_alpha, 0.0};
    for (const auto& [key, rank] : rank_pattern)
        if (regex_full_match(module_path, pattern_regex(key), source)) {
            s.r = rank;
            break;
        }
    for (const auto& [key, alpha] : alpha_pattern)
        if (regex_full_match(module_path, pattern_regex(key), source)) {
            s.alpha = alpha;
            break;
        }
    s.scale = use_rslora ? s.alpha / std::sqrt(double(s.r)) : s.alpha / double(s.r);
    return s;
}

lora_config parse_lora_config(std::string_view json_text, const std::string& where) {
    const json j = parse_json_object<json>(json_text, where, "an adapter_config.json");

    lora_config c;
    c.source = where;
    const json* pt = find_non_null(j, "peft_type");
    if (!pt) throw format_error(where, "missing required key peft_type");
    if (!pt->is_string()) wrong_type(where, "peft_type", "a string", *pt);
    c.peft_type = pt->get<std::string>();
    if (c.peft_type != "LORA")
        throw unsupported_error(where,
                                "peft_type '" + c.peft_type + "' is not supported (only LORA adapters are)");

    if (const json* v = find_non_null(j, "r")) c.r = positive_int(*v, where, "r");
    if (const json* v = find_non_null(j, "lora_alpha")) c.lora_alpha = finite_number(*v, where, "lora_alpha");
    c.use_rslora = get_bool(j, "use_rslora", false, where);

    if (const json* v = find_non_null(j, "rank_pattern")) {
        if (!v->is_object()) wrong_type(where, "rank_pattern", "an object of pattern -> rank", *v);
        for (const auto& [key, value] : v->items()) {
            compile_regex(pattern_regex(key), where, "rank_pattern key");
            c.rank_pattern.emplace_back(key, positive_int(value, where, "rank_pattern[\"" + key + "\"]"));
        }
    }
    if (const json* v = find_non_null(j, "alpha_pattern")) {
        if (!v->is_object()) wrong_type(where, "alpha_pattern", "an object of pattern -> alpha", *v);
        for (const auto& [key, value] : v->items()) {
            compile_regex(pattern_regex(key), where, "alpha_pattern key");
            c.alpha_pattern.emplace_back(key, finite_number(value, where, "alpha_pattern[\"" + key + "\"]"));
        }
    }
    c.target_modules = get_selector(j, "target_modules", where);
    c.exclude_modules = get_selector(j, "exclude_modules", where);
    c.fan_in_fan_out = get_bool(j, "fan_in_fan_out", false, where);
    if (const json* v = find_non_null(j, "modules_to_save"))
        c.modules_to_save = string_list(*v, where, "modules_to_save");
    c.use_dora = get_bool(j, "use_dora", false, where);
    c.base_model_name_or_path = get_string(j, "base_model_name_or_path", "", where);
    c.task_type = get_string(j, "task_type", "", where);
    c.bias = get_string(j, "bias", "none", where);
    c.lora_bias = get_bool(j, "lora_bias", false, where);
    if (const json* v = find_non_null(j, "layers_to_transform")) {
        std::vector<int> layers;
        auto one = [&](const json& e) {
            if (!e.is_number_integer() || e.get<std::int64_t>() < 0 ||
                e.get<std::int64_t>() > std::numeric_limits<int>::max())
                wrong_type(where, "layers_to_transform", "a layer index or a list of them", *v);
            layers.push_back(static_cast<int>(e.get<std::int64_t>()));
        };
        if (v->is_array()) {
            for (const auto& e : *v)
                one(e);
        } else {
            one(*v);
        }
        c.layers_to_transform = std::move(layers);
    }
    return c;
}

lora_config read_lora_config(const std::filesystem::path& path) {
    std::filesystem::path file = path;
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) file = path / "adapter_config.json";
    if (!std::filesystem::exists(file, ec)) throw format_error(path_string(file), "no such file");
    return parse_lora_config(read_text(file), path_string(file));
}

int module_layer_index(std::string_view module_path) {
    // Walk dot-separated components; return the integer that follows a "layers" component.
    std::size_t pos = 0;
    bool after_layers = false;
    while (pos <= module_path.size()) {
        const std::size_t dot = std::min(module_path.find('.', pos), module_path.size());
        const std::string_view part = module_path.substr(pos, dot - pos);
        if (after_layers) {
            int value = 0;
            auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
            if (ec == std::errc() && p == part.data() + part.size() && !part.empty() && value >= 0)
                return value;
        }
        after_layers = part == "layers";
        pos = dot + 1;
    }
    return -1;
}

} // namespace lorafleet::io
