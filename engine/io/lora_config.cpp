// adapter_config.json parsing and PEFT's per-module rules. The JSON is read with nlohmann::ordered_json
// because rank_pattern / alpha_pattern are matched in file key order (first match wins). Regexes are RE2
// (linear time; the syntax differences from Python's re are in the header). Errors name keys and JSON
// types, never values from the file.
#include "engine/io/lora_config.hpp"

#include "engine/core/error.hpp"
#include "engine/io/json_document.hpp"
#include "engine/io/regular_file.hpp"

#include <nlohmann/json.hpp>
#include <re2/re2.h>

#include <charconv>
#include <cmath>
#include <limits>

namespace lorafleet::io {
namespace {

using json = nlohmann::ordered_json;

// A JSON key fit to quote in a one-line message: printable ASCII only, at most 48 bytes.
std::string key_label(std::string_view key) {
    std::string out;
    for (const char ch : key.substr(0, 48)) {
        const auto c = static_cast<unsigned char>(ch);
        out += (c >= 0x20 && c < 0x7f) ? ch : '?';
    }
    return key.size() > 48 ? out + "..." : out;
}

[[noreturn]] void wrong_type(const std::string& where, const std::string& key, const char* expected,
                             const json& got) {
    throw format_error(where, key + " must be " + expected + ", got " + json_type_name(got));
}

const char* re2_error_text(RE2::ErrorCode code) {
    switch (code) {
    case RE2::ErrorBadEscape:
        return "bad escape sequence";
    case RE2::ErrorBadCharClass:
        return "bad character class";
    case RE2::ErrorBadCharRange:
        return "bad character class range";
    case RE2::ErrorMissingBracket:
        return "missing closing ]";
    case RE2::ErrorMissingParen:
        return "missing closing )";
    case RE2::ErrorUnexpectedParen:
        return "unexpected closing )";
    case RE2::ErrorTrailingBackslash:
        return "trailing \\ at the end";
    case RE2::ErrorRepeatArgument:
        return "repetition operator without an argument";
    case RE2::ErrorRepeatSize:
        return "bad repetition count";
    case RE2::ErrorRepeatOp:
        return "bad repetition operator";
    case RE2::ErrorBadPerlOp:
        return "unsupported group (lookaround, backreference or atomic group)";
    case RE2::ErrorBadUTF8:
        return "invalid UTF-8";
    case RE2::ErrorBadNamedCapture:
        return "bad named group";
    case RE2::ErrorPatternTooLarge:
        return "pattern too large to compile";
    default:
        return "cannot compile";
    }
}

// Compiles a config regex (RE2, UTF-8, no logging); format_error naming `key` when it is too long or
// invalid. The message says what is wrong, never the pattern.
std::shared_ptr<const RE2> compile_regex(const std::string& pattern, const std::string& where,
                                         const std::string& key) {
    if (pattern.size() > max_regex_bytes)
        throw format_error(where, key + ": the regular expression is " + std::to_string(pattern.size()) +
                                      " bytes, more than the " + std::to_string(max_regex_bytes) +
                                      " allowed");
    RE2::Options options;
    options.set_log_errors(false);
    auto re = std::make_shared<const RE2>(pattern, options);
    if (!re->ok())
        throw format_error(where, key + ": not a valid regular expression (RE2 syntax: " +
                                      re2_error_text(re->error_code()) + ")");
    return re;
}

// Full match of a module path; format_error when the path is longer than max_module_name_bytes.
bool regex_full_match(std::string_view text, const RE2& re, const std::string& where) {
    if (text.size() > max_module_name_bytes)
        throw format_error(where, "a module path of " + std::to_string(text.size()) +
                                      " bytes is longer than the " + std::to_string(max_module_name_bytes) +
                                      " allowed");
    return RE2::FullMatch(re2::StringPiece(text.data(), text.size()), re);
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
        throw validation_error(where, key + " must be a positive integer that fits an int");
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
        s.compiled = compile_regex(s.regex, where, key);
    } else if (v->is_array()) {
        s.type = module_selector::kind::names;
        s.names = string_list(*v, where, key);
    } else {
        wrong_type(where, key, "a list of strings, a regex string or null", *v);
    }
    return s;
}

} // namespace

bool module_selector::matches(std::string_view module_path) const {
    switch (type) {
    case kind::none:
        return false;
    case kind::regex:
        if (compiled) return regex_full_match(module_path, *compiled, "");
        return regex_full_match(module_path, *compile_regex(regex, "", "regex"), "");
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
        if (regex_full_match(module_path, *compile_regex(pattern_regex(key), source, "rank_pattern key"),
                             source)) {
            s.r = rank;
            break;
        }
    for (const auto& [key, alpha] : alpha_pattern)
        if (regex_full_match(module_path, *compile_regex(pattern_regex(key), source, "alpha_pattern key"),
                             source)) {
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
    if (c.peft_type != "LORA") {
        // Name PEFT's own types; anything else read from the file is not quoted.
        static const char* const known[] = {
            "ADALORA",       "IA3",      "LOHA",          "LOKR",      "OFT",  "BOFT",  "VERA", "FOURIERFT",
            "PREFIX_TUNING", "P_TUNING", "PROMPT_TUNING", "LN_TUNING", "POLY", "XLORA", "HRA",  "BONE"};
        std::string shown = "an unknown peft_type";
        for (const char* k : known)
            if (c.peft_type == k) shown = std::string("peft_type ") + k;
        throw unsupported_error(where, shown + " is not supported (only LORA adapters are)");
    }

    if (const json* v = find_non_null(j, "r")) c.r = positive_int(*v, where, "r");
    if (const json* v = find_non_null(j, "lora_alpha")) c.lora_alpha = finite_number(*v, where, "lora_alpha");
    c.use_rslora = get_bool(j, "use_rslora", false, where);

    if (const json* v = find_non_null(j, "rank_pattern")) {
        if (!v->is_object()) wrong_type(where, "rank_pattern", "an object of pattern -> rank", *v);
        for (const auto& [key, value] : v->items()) {
            compile_regex(pattern_regex(key), where, "rank_pattern key \"" + key_label(key) + "\"");
            c.rank_pattern.emplace_back(
                key, positive_int(value, where, "rank_pattern[\"" + key_label(key) + "\"]"));
        }
    }
    if (const json* v = find_non_null(j, "alpha_pattern")) {
        if (!v->is_object()) wrong_type(where, "alpha_pattern", "an object of pattern -> alpha", *v);
        for (const auto& [key, value] : v->items()) {
            compile_regex(pattern_regex(key), where, "alpha_pattern key \"" + key_label(key) + "\"");
            c.alpha_pattern.emplace_back(
                key, finite_number(value, where, "alpha_pattern[\"" + key_label(key) + "\"]"));
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
    return parse_lora_config(read_text_file(file, max_json_file_bytes, "adapter_config.json"),
                             path_string(file));
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
