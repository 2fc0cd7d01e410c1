// Loading a PEFT LoRA adapter folder: classify every tensor of adapter_model.safetensors (linear LoRA
// factor, DoRA magnitude, lora_B bias, embedding LoRA, modules_to_save weight, unknown), pair lora_A with
// lora_B per module, then validate structure, ranks against the config, the base geometry and finiteness
// in that order, so the cheapest and most telling error is reported first. See peft_adapter.hpp.
#include "engine/io/peft_adapter.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cfloat>
#include <charconv>
#include <climits>
#include <cmath>
#include <map>
#include <set>

namespace lorafleet::io {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view peft_prefix = "base_model.model.";
constexpr std::array<std::string_view, 7> canonical_order{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                          "gate_proj", "up_proj", "down_proj"};
constexpr std::size_t max_listed = 8; // names shown in one warning before "... and N more"

std::string shape_string(const std::vector<std::int64_t>& shape) {
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + "]";
}

std::string shape_string(std::int64_t rows, std::int64_t cols) {
    return shape_string({rows, cols});
}

std::string join_limited(const std::vector<std::string>& items) {
    std::string out;
    for (std::size_t i = 0; i < items.size() && i < max_listed; ++i)
        out += (i ? ", " : "") + items[i];
    if (items.size() > max_listed) out += ", ... and " + std::to_string(items.size() - max_listed) + " more";
    return out;
}

std::string short_name_of(std::string_view path) {
    const auto dot = path.rfind('.');
    return std::string(dot == std::string_view::npos ? path : path.substr(dot + 1));
}

// "<module>.<factor>.weight" or "<module>.<factor>.<adapter name>.weight" (leaf may also be "bias").
struct factor_name {
    std::string module;
    std::string leaf; // "weight", "bias" or whatever else followed
};

std::optional<factor_name> split_factor(std::string_view rest, std::string_view factor) {
    const std::string marker = "." + std::string(factor) + ".";
    const auto pos = rest.rfind(marker);
    if (pos == std::string_view::npos || pos == 0) return std::nullopt;
    std::string_view tail = rest.substr(pos + marker.size());
    if (const auto dot = tail.find('.'); dot != std::string_view::npos)
        tail = tail.substr(dot + 1); // adapter name
    return factor_name{std::string(rest.substr(0, pos)), std::string(tail)};
}

bool has_component(std::string_view rest, std::string_view component) {
    std::size_t pos = 0;
    while ((pos = rest.find(component, pos)) != std::string_view::npos) {
        const bool starts = pos == 0 || rest[pos - 1] == '.';
        const std::size_t end = pos + component.size();
        const bool ends = end == rest.size() || rest[end] == '.';
        if (starts && ends) return true;
        pos = end;
    }
    return false;
}

bool saved_module(std::string_view rest, const std::optional<std::vector<std::string>>& modules_to_save) {
    if (has_component(rest, "modules_to_save")) return true;
    if (!modules_to_save) return false;
    const auto dot = rest.rfind('.');
    if (dot == std::string_view::npos) return false;
    const std::string_view module = rest.substr(0, dot); // drop ".weight" / ".bias"
    for (const auto& m : *modules_to_save) {
        if (module == m) return true;
        if (module.size() > m.size() && module.ends_with(m) && module[module.size() - m.size() - 1] == '.')
            return true;
    }
    return false;
}

fs::path display_dir(const fs::path& dir) {
    fs::path d = dir.lexically_normal();
    if (d.filename().empty() && d.has_parent_path()) d = d.parent_path(); // "a/b/" -> "a/b"
    return d;
}

std::string folder_name(const fs::path& dir) {
    fs::path d = display_dir(dir);
    if (d.filename().empty() || d.filename() == "." || d.filename() == "..") {
        std::error_code ec;
        const fs::path abs = fs::weakly_canonical(fs::absolute(dir, ec), ec);
        if (!abs.filename().empty()) return abs.filename().string();
    }
    return d.filename().string();
}

struct factor_pair {
    const tensor_view* a = nullptr;
    const tensor_view* b = nullptr;
};

void check_factor_dtype(const tensor_view& t, const std::string& where) {
    if (!is_lora_float(t.type()))
        throw unsupported_error(where, "tensor " + t.name() + " has dtype " +
                                           std::string(dtype_name(t.type())) +
                                           "; LoRA weights must be F32, F16 or BF16");
}

// A name for an error line: at most 80 bytes, anything outside printable ASCII shown as '?'.
std::string printable(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i < text.size() && i < 80; ++i)
        out += (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
    if (text.size() > 80) out += "...";
    return out;
}

double sum_of_squares(const std::vector<float>& v) {
    double s = 0;
    for (float x : v)
        s += double(x) * double(x);
    return s;
}

// |B · A|_F without forming [d_out, d_in]: |B|_F |A|_F bounds it, and when that bound is too large the
// exact value is sqrt(sum_ij (Bᵀ B)_ij (A Aᵀ)_ij) from the two r x r Gram matrices (in double).
double product_norm(const std::vector<float>& a, const std::vector<float>& b, std::int64_t r, double limit) {
    const double bound = std::sqrt(sum_of_squares(a)) * std::sqrt(sum_of_squares(b));
    if (bound <= limit) return bound;
    const std::int64_t d_in = std::int64_t(a.size()) / r, d_out = std::int64_t(b.size()) / r;
    std::vector<double> ga(std::size_t(r * r), 0.0), gb(std::size_t(r * r), 0.0);
    for (std::int64_t i = 0; i < r; ++i)
        for (std::int64_t j = i; j < r; ++j) {
            double sa = 0, sb = 0;
            for (std::int64_t k = 0; k < d_in; ++k)
                sa += double(a[i * d_in + k]) * a[j * d_in + k];
            for (std::int64_t k = 0; k < d_out; ++k)
                sb += double(b[k * r + i]) * b[k * r + j];
            ga[i * r + j] = ga[j * r + i] = sa;
            gb[i * r + j] = gb[j * r + i] = sb;
        }
    double sq = 0;
    for (std::size_t k = 0; k < ga.size(); ++k)
        sq += ga[k] * gb[k];
    return std::sqrt(std::max(sq, 0.0));
}

} // namespace

std::string module_path_problem(std::string_view path, int num_layers, int* layer) {
    if (path.empty()) return "empty module name";
    if (path.size() > 512) return "module name longer than 512 bytes";
    for (char c : path)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'))
            return "module name has characters outside [A-Za-z0-9_.-] (no paths)";
    int found = -1, count = 0;
    bool after_layers = false;
    std::size_t pos = 0;
    while (pos <= path.size()) {
        const std::size_t dot = std::min(path.find('.', pos), path.size());
        const std::string_view part = path.substr(pos, dot - pos);
        if (part.empty()) return "module name has an empty component (\"..\" or a leading/trailing dot)";
        if (after_layers) {
            int value = 0;
            const auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), value);
            if (ec != std::errc() || p != part.data() + part.size() || value < 0 || value >= max_layer_index)
                return "layer index '" + printable(part) + "' is not a number in [0, " +
                       std::to_string(num_layers > 0 ? num_layers : max_layer_index) + ")";
            if (num_layers > 0 && value >= num_layers)
                return "layer " + std::to_string(value) + ", but the base model has layers 0.." +
                       std::to_string(num_layers - 1);
            found = value;
        }
        if (part == "layers") ++count;
        after_layers = part == "layers";
        pos = dot + 1;
    }
    if (after_layers) return "\"layers\" is not followed by a layer index";
    if (count == 0) return "no \"layers.N\" component (not a decoder-layer module)";
    if (count > 1) return "more than one \"layers\" component";
    if (layer) *layer = found;
    return "";
}

std::string adapter_name_problem(std::string_view name) {
    if (name.empty()) return "empty adapter name";
    if (name == "." || name == "..") return "adapter name '" + std::string(name) + "' is not a folder name";
    if (name.size() > 255) return "adapter name longer than 255 bytes";
    for (char c : name)
        if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            return "adapter name '" + printable(name) + "' has '/', '\\' or control characters";
    return "";
}

double max_update_norm() {
    return std::sqrt(double(FLT_MAX));
}

int module_order(std::string_view short_name) {
    for (std::size_t i = 0; i < canonical_order.size(); ++i)
        if (canonical_order[i] == short_name) return int(i);
    return int(canonical_order.size());
}

lora_factors lora_module::factors_f32() const {
    lora_factors f;
    f.rank = rank;
    f.d_in = d_in;
    f.d_out = d_out;
    f.a = a.to_f32();
    f.b = b.to_f32();
    for (float& v : f.b)
        v = static_cast<float>(double(v) * scale);
    return f;
}

int peft_adapter::max_rank() const {
    int r = 0;
    for (const auto& m : modules)
        r = std::max(r, m.rank);
    return r;
}

std::int64_t peft_adapter::parameter_count() const {
    std::int64_t n = 0;
    for (const auto& m : modules)
        n += m.parameter_count();
    return n;
}

int peft_adapter::layer_count() const {
    std::set<int> layers;
    for (const auto& m : modules)
        if (m.layer >= 0) layers.insert(m.layer);
    return int(layers.size());
}

std::vector<std::string> peft_adapter::module_names() const {
    std::vector<std::string> names;
    for (const auto& m : modules)
        if (std::find(names.begin(), names.end(), m.short_name) == names.end()) names.push_back(m.short_name);
    std::stable_sort(names.begin(), names.end(), [](const std::string& x, const std::string& y) {
        const int ox = module_order(x), oy = module_order(y);
        return ox != oy ? ox < oy : x < y;
    });
    return names;
}

std::optional<dtype> peft_adapter::weight_dtype() const {
    if (modules.empty()) return std::nullopt;
    const dtype t = modules.front().a.type();
    for (const auto& m : modules)
        if (m.a.type() != t || m.b.type() != t) return std::nullopt;
    return t;
}

std::uint64_t peft_adapter::weight_bytes() const {
    std::uint64_t n = 0;
    for (const auto& m : modules)
        n += m.a.bytes.size() + m.b.bytes.size();
    return n;
}

const lora_module* peft_adapter::find(std::string_view module_path) const {
    for (const auto& m : modules)
        if (m.path == module_path) return &m;
    return nullptr;
}

peft_adapter load_peft_adapter(const fs::path& dir, const peft_load_options& options) {
    const std::string dir_s = path_string(display_dir(dir));
    std::error_code ec;
    if (!fs::exists(dir, ec)) throw io_error(dir_s, "no such folder");
    if (!fs::is_directory(dir, ec)) throw format_error(dir_s, "not a folder (a PEFT adapter is a folder)");
    const fs::path config_path = dir / "adapter_config.json";
    const fs::path weights_path = dir / "adapter_model.safetensors";
    const std::string where = path_string(weights_path);

    if (!fs::exists(weights_path, ec)) {
        if (fs::exists(dir / "adapter_model.bin", ec))
            throw unsupported_error(
                path_string(dir / "adapter_model.bin"),
                "pickle checkpoints are not loaded; convert with safetensors (load the adapter "
                "in PEFT and save_pretrained with safe_serialization=True)");
        if (!fs::exists(config_path, ec))
            throw format_error(dir_s,
                               "not a PEFT adapter: no adapter_config.json and no adapter_model.safetensors");
        throw format_error(dir_s, "adapter_model.safetensors is missing");
    }
    if (!fs::exists(config_path, ec)) throw format_error(dir_s, "adapter_config.json is missing");

    peft_adapter ad;
    ad.dir = dir;
    ad.name = folder_name(dir);
    if (const auto problem = adapter_name_problem(ad.name); !problem.empty())
        throw validation_error(dir_s, problem);
    ad.config = read_lora_config(config_path);
    const std::string& config_where = ad.config.source;
    if (ad.config.use_dora)
        throw unsupported_error(config_where,
                                "DoRA (use_dora) is not supported: its per-column normalization "
                                "is not a low-rank additive update");
    if (ad.config.lora_bias)
        throw unsupported_error(config_where, "lora_bias (a bias on lora_B) is not supported: it is not a "
                                              "low-rank additive update");
    ad.file = safetensors_file::open(weights_path);

    // ---- classify tensors ----
    std::map<std::string, factor_pair> pairs; // by module path: deterministic order
    std::set<std::string> embedding_modules;
    std::vector<std::string> saved_weights;
    std::vector<std::string> unrecognized;
    for (const tensor_view& t : ad.file->tensors()) {
        const std::string_view name = t.name();
        const std::string_view rest = name.starts_with(peft_prefix) ? name.substr(peft_prefix.size()) : name;
        if (has_component(rest, "lora_magnitude_vector"))
            throw unsupported_error(where,
                                    "tensor " + t.name() +
                                        ": DoRA (lora_magnitude_vector) is not supported: "
                                        "its per-column normalization is not a low-rank additive update");
        if (has_component(rest, "lora_embedding_A") || has_component(rest, "lora_embedding_B")) {
            const auto at = rest.find(".lora_embedding_");
            embedding_modules.insert(std::string(at == std::string_view::npos ? rest : rest.substr(0, at)));
            continue;
        }
        const auto fa = split_factor(rest, "lora_A");
        const auto fb = fa ? std::nullopt : split_factor(rest, "lora_B");
        if (fa || fb) {
            const factor_name& f = fa ? *fa : *fb;
            if (fb && f.leaf == "bias")
                throw unsupported_error(where, "tensor " + t.name() +
                                                   ": a bias on lora_B (lora_bias) is not "
                                                   "supported: it is not a low-rank additive update");
            if (f.leaf != "weight") {
                unrecognized.push_back(t.name());
                continue;
            }
            factor_pair& p = pairs[f.module];
            const tensor_view*& slot = fa ? p.a : p.b;
            if (slot)
                throw format_error(where, "module " + f.module + " has two " + (fa ? "lora_A" : "lora_B") +
                                              " tensors (" + slot->name() + ", " + t.name() +
                                              "); a file must hold one adapter");
            slot = &t;
            continue;
        }
        if (saved_module(rest, ad.config.modules_to_save)) {
            saved_weights.push_back(t.name());
            continue;
        }
        unrecognized.push_back(t.name());
    }

    // ---- pair and validate structure ----
    const model_geometry* base = options.base;
    std::vector<std::string> untargeted;
    for (const auto& [path, p] : pairs) {
        if (!p.a || !p.b)
            throw format_error(where, "module " + path + " has " +
                                          (p.a ? "lora_A but no lora_B" : "lora_B but no lora_A"));
        check_factor_dtype(*p.a, where);
        check_factor_dtype(*p.b, where);
        if (p.a->type() != p.b->type())
            throw validation_error(where, "module " + path + ": lora_A is " +
                                              std::string(dtype_name(p.a->type())) + " but lora_B is " +
                                              std::string(dtype_name(p.b->type())) +
                                              "; both factors of a module must share a dtype");
        for (const tensor_view* t : {p.a, p.b})
            if (t->shape().size() != 2)
                throw shape_mismatch(where, "tensor " + t->name() + " must be 2-D, has shape " +
                                                shape_string(t->shape()));
        const auto& sa = p.a->shape(); // [r, d_in]
        const auto& sb = p.b->shape(); // [d_out, r]
        if (sa[0] != sb[1])
            throw shape_mismatch(where, "module " + path + ": lora_A is " + shape_string(sa) +
                                            " but lora_B is " + shape_string(sb) + "; their ranks differ");
        if (sa[1] <= 0 || sb[0] <= 0)
            throw shape_mismatch(where, "module " + path + ": lora_A " + shape_string(sa) + " / lora_B " +
                                            shape_string(sb) + " has an empty dimension");

        lora_module m;
        m.path = path;
        m.layer = module_layer_index(path);
        m.short_name = short_name_of(path);
        const lora_module_scale s = ad.config.scale_for(path);
        if (sa[0] != s.r)
            throw validation_error(where, "module " + path + " has rank " + std::to_string(sa[0]) +
                                              " but adapter_config.json gives r = " + std::to_string(s.r) +
                                              " for it (PEFT would scale it by alpha/" + std::to_string(s.r) +
                                              ", not alpha/" + std::to_string(sa[0]) + ")");
        if (!std::isfinite(s.scale) || std::fabs(s.scale) > FLT_MAX || !std::isfinite(float(s.scale)))
            throw validation_error(where, "module " + path + ": scale lora_alpha/" +
                                              (ad.config.use_rslora ? "sqrt(r)" : "r") +
                                              " is not finite in float32");
        m.rank = s.r;
        m.alpha = s.alpha;
        m.scale = s.scale;
        m.d_in = sa[1];
        m.d_out = sb[0];
        m.a = *p.a;
        m.b = *p.b;

        if (base) {
            const auto shape = base->linear_shape(m.short_name);
            if (!shape) {
                std::string names;
                for (const auto& n : base->linear_modules())
                    names += (names.empty() ? "" : ", ") + n;
                throw shape_mismatch(where, "module " + path + ": '" + m.short_name +
                                                "' is not a decoder linear of " + base->name + " (" + names +
                                                ")");
            }
            if (m.layer < 0 || m.layer >= base->num_layers)
                throw shape_mismatch(
                    where,
                    "module " + path + ": " +
                        (m.layer < 0 ? std::string("no layer index") : "layer " + std::to_string(m.layer)) +
                        ", but " + base->name + " has layers 0.." + std::to_string(base->num_layers - 1));
            if (m.d_in != shape->d_in || m.d_out != shape->d_out)
                throw shape_mismatch(where, "module " + path + " does not fit " + base->name +
                                                ": expected lora_A " + shape_string(m.rank, shape->d_in) +
                                                " and lora_B " + shape_string(shape->d_out, m.rank) +
                                                ", found lora_A " + shape_string(sa) + " and lora_B " +
                                                shape_string(sb));
        }
        // Names that cannot be placed in a bank (no or absurd layer, "..", "/", odd characters).
        if (const auto problem = module_path_problem(path, base ? base->num_layers : 0, &m.layer);
            !problem.empty())
            throw validation_error(where, "module " + printable(path) + ": " + problem);
        if (!ad.config.targets(path)) untargeted.push_back(path);
        ad.modules.push_back(std::move(m));
    }
    if (ad.modules.empty()) throw validation_error(dir_s, "adapter binds to no linear module");

    if (options.check_finite)
        for (const auto& m : ad.modules)
            for (const tensor_view* t : {&m.a, &m.b})
                if (!t->all_finite())
                    throw validation_error(where, "tensor " + t->name() + " contains NaN or Inf");
    // Every value that enters a bank must stay finite in float32 after scaling: scale · B element-wise
    // (the folded factor) and |scale · B · A|_F, whose square the compressor computes.
    if (options.check_finite)
        for (const auto& m : ad.modules) {
            const auto a = m.a.to_f32();
            const auto b = m.b.to_f32();
            double max_b = 0;
            for (float x : b)
                max_b = std::max(max_b, double(std::fabs(x)));
            if (max_b * std::fabs(m.scale) > FLT_MAX)
                throw validation_error(where,
                                       "module " + m.path + ": lora_B times the scale overflows float32");
            const double limit = max_update_norm();
            if (std::fabs(m.scale) *
                    product_norm(a, b, m.rank, limit / std::max(std::fabs(m.scale), 1e-300)) >
                limit)
                throw validation_error(where, "module " + m.path +
                                                  ": the update scale * B * A is too large (its norm "
                                                  "exceeds 1.8e19; float32 overflows)");
        }

    std::sort(ad.modules.begin(), ad.modules.end(), [](const lora_module& x, const lora_module& y) {
        const int lx = x.layer < 0 ? INT_MAX : x.layer, ly = y.layer < 0 ? INT_MAX : y.layer;
        if (lx != ly) return lx < ly;
        const int ox = module_order(x.short_name), oy = module_order(y.short_name);
        if (ox != oy) return ox < oy;
        return x.path < y.path;
    });

    // ---- warnings ----
    if (!embedding_modules.empty())
        ad.warnings.push_back("ignored embedding LoRA on " +
                              join_limited({embedding_modules.begin(), embedding_modules.end()}) +
                              ": not a low-rank linear update; it is neither served nor compressed");
    if (!saved_weights.empty())
        ad.warnings.push_back("ignored modules_to_save full weights " + join_limited(saved_weights) +
                              ": not low-rank linear updates; they are neither served nor compressed");
    if (!unrecognized.empty())
        ad.warnings.push_back("ignored unrecognized tensors: " + join_limited(unrecognized));
    if (!untargeted.empty())
        ad.warnings.push_back(
            "modules not selected by target_modules (PEFT would not apply them; loaded anyway): " +
            join_limited(untargeted));
    // Validation read every value: leave those pages to the page cache rather than this process's
    // resident set (a fleet of thousands would otherwise count all its files there).
    ad.file->release_pages();
    return ad;
}

} // namespace lorafleet::io
