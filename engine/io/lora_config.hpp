// A PEFT LoRA `adapter_config.json`, strictly typed, and PEFT's per-module rules derived from it: which
// module paths the adapter targets and each module's rank, alpha and scale (method.md §1).
// Invariants after parsing: peft_type == "LORA", r > 0, every rank_pattern value > 0, every regex in the
// config (rank/alpha pattern keys, a string target_modules or exclude_modules) is at most
// max_regex_bytes long and compiles as RE2.
// Keys this program does not use are ignored; a used key with the wrong JSON type is a format_error
// naming the key, the expected type and the JSON type found (never the value: errors quote nothing read
// from the file but short key names).
// Regexes: PEFT uses Python's `re.fullmatch`; here they are RE2 (linear-time matching, no backtracking,
// so a hostile pattern such as `(.*)*(.*)*x$` cannot stall a loader). RE2 accepts Python's (?P<name>...)
// groups, classes, repetition, anchors and flags such as (?i); it has no backreferences (\1), no
// lookaround ((?=...), (?!...), (?<=...)), no possessive or atomic groups and no \Z (use \z or $):
// such a pattern is a format_error ("not a valid regular expression: ..."). `$` only matches at the
// very end (Python's also before a final newline, which module paths never have). Module paths longer
// than max_module_name_bytes are refused (format_error) before any regex sees them.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}

namespace lorafleet::io {

constexpr std::size_t max_regex_bytes = 4096;       // a target_modules / pattern-key regex
constexpr std::size_t max_module_name_bytes = 1024; // a module path matched against the config's rules

// r, alpha and ΔW = scale · B · A for one module after rank_pattern / alpha_pattern.
struct lora_module_scale {
    int r = 0;
    double alpha = 0.0;
    double scale = 0.0; // alpha / r, or alpha / sqrt(r) with use_rslora
};

// target_modules / exclude_modules: absent (null), a list of names, or one regex over the whole path.
struct module_selector {
    enum class kind { none, names, regex };
    kind type = kind::none;
    std::vector<std::string> names;           // kind::names: "q_proj" or a full/suffix path
    std::string regex;                        // kind::regex: RE2 full match against the whole module path
    std::shared_ptr<const re2::RE2> compiled; // `regex` compiled by the parser (null: compiled per call)

    // names: path == t or path ends with "." + t; regex: full match; none: false. format_error when the
    // regex does not compile or the path is longer than max_module_name_bytes.
    bool matches(std::string_view module_path) const;
};

struct lora_config {
    std::string source; // the file (or label) errors name
    std::string peft_type = "LORA";
    int r = 8;               // PEFT's default
    double lora_alpha = 8.0; // PEFT's default
    bool use_rslora = false; // scale = alpha / sqrt(r) instead of alpha / r
    // Pattern keys in file order: PEFT takes the first key K whose regex (.*\.)?(K)$ matches the path.
    std::vector<std::pair<std::string, int>> rank_pattern;
    std::vector<std::pair<std::string, double>> alpha_pattern;
    module_selector target_modules;  // kind::none: every module is considered targeted
    module_selector exclude_modules; // kind::none: nothing excluded
    bool fan_in_fan_out = false;     // GPT-2 Conv1D layout of W; lora_A / lora_B shapes are unaffected
    std::optional<std::vector<std::string>> modules_to_save;
    bool use_dora = false;
    std::string base_model_name_or_path; // "" when null or absent
    std::string task_type;               // "" when null or absent
    std::string bias = "none";           // "none", "all" or "lora_only" (base biases trained and saved)
    bool lora_bias = false;              // a bias on lora_B: not a pure low-rank update
    std::optional<std::vector<int>> layers_to_transform; // an int in the file becomes a one-element list

    // Whether PEFT would have put a LoRA on `module_path` (e.g. "model.layers.3.self_attn.q_proj"):
    // target_modules matches (or is absent, or is "all-linear"), exclude_modules does not, and the
    // layer index is in layers_to_transform when that is set.
    bool targets(std::string_view module_path) const;

    // r and alpha for `module_path` after rank_pattern / alpha_pattern (each looked up on its own, in
    // key order, as current PEFT does), and the resulting scale.
    lora_module_scale scale_for(std::string_view module_path) const;
};

// Parses adapter_config.json text; errors name `where`. Throws format_error (bad JSON, wrong type,
// invalid regex), validation_error (r <= 0) or unsupported_error (peft_type other than LORA).
lora_config parse_lora_config(std::string_view json_text, const std::string& where);
// Reads `path`: an adapter_config.json, or a folder holding one.
lora_config read_lora_config(const std::filesystem::path& path);

// Layer index of a module path: the integer component after "layers" ("model.layers.7.mlp.up_proj" -> 7);
// -1 when there is none.
int module_layer_index(std::string_view module_path);

} // namespace lorafleet::io
