#include "engine/bank/bank_format.hpp"

#include "engine/bank/bank_validation.hpp"
#include "engine/core/error.hpp"
#include "engine/core/sha256.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/io/regular_file.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <iomanip>
#include <map>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

namespace lorafleet::bank {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* k_format = "lorafleet-bank";
constexpr const char* k_cores = "cores.safetensors";

std::string cluster_file(int c) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "bases/cluster-%03d.safetensors", c);
    return buf;
}

// ---- manifest <-> json ---------------------------------------------------------------------------

json geometry_json(const io::model_geometry& g) {
    return {{"name", g.name},
            {"model_type", g.model_type},
            {"architecture", g.architecture},
            {"hidden_size", g.hidden_size},
            {"num_layers", g.num_layers},
            {"num_heads", g.num_heads},
            {"num_kv_heads", g.num_kv_heads},
            {"head_dim", g.head_dim},
            {"intermediate_size", g.intermediate_size},
            {"vocab_size", g.vocab_size}};
}

// Typed access with errors that name the manifest and the key.
struct manifest_reader {
    std::string where;

    const json& field(const json& obj, const char* key) const {
        if (!obj.is_object() || !obj.contains(key))
            throw format_error(where, std::string("missing \"") + key + "\"");
        return obj.at(key);
    }
    std::string str(const json& obj, const char* key) const {
        const auto& v = field(obj, key);
        if (!v.is_string()) throw format_error(where, std::string("\"") + key + "\" must be a string");
        return v.get<std::string>();
    }
    std::int64_t integer(const json& obj, const char* key, std::int64_t min, std::int64_t max) const {
        const auto& v = field(obj, key);
        if (!v.is_number_integer())
            throw format_error(where, std::string("\"") + key + "\" must be an integer");
        const auto x = v.get<std::int64_t>();
        if (x < min || x > max)
            throw format_error(where,
                               std::string("\"") + key + "\" = " + std::to_string(x) + " is out of range");
        return x;
    }
    const json& array(const json& obj, const char* key) const {
        const auto& v = field(obj, key);
        if (!v.is_array()) throw format_error(where, std::string("\"") + key + "\" must be an array");
        return v;
    }
};

io::model_geometry geometry_from_json(const json& j, const manifest_reader& r) {
    io::model_geometry g;
    g.name = r.str(j, "name");
    g.model_type = r.str(j, "model_type");
    g.architecture = r.str(j, "architecture");
    constexpr std::int64_t big = 1 << 24;
    g.hidden_size = int(r.integer(j, "hidden_size", 1, big));
    g.num_layers = int(r.integer(j, "num_layers", 1, big));
    g.num_heads = int(r.integer(j, "num_heads", 1, big));
    g.num_kv_heads = int(r.integer(j, "num_kv_heads", 1, big));
    g.head_dim = int(r.integer(j, "head_dim", 1, big));
    g.intermediate_size = int(r.integer(j, "intermediate_size", 1, big));
    g.vocab_size = int(r.integer(j, "vocab_size", 1, big));
    return g;
}

// The optional "quality" section (compressed_bank.hpp): results of adapters the bank no longer has are
// dropped, so the section never names a stranger.
json quality_json(const quality_section& q, const std::vector<bank_adapter>& adapters) {
    std::set<std::string> names;
    for (const auto& a : adapters)
        names.insert(a.name);
    json per = json::object();
    for (const auto& [name, a] : q.adapters) {
        if (!names.count(name)) continue;
        per[name] = {{"prompts", a.prompts},
                     {"tokens", a.tokens},
                     {"exact_matches", a.exact_matches},
                     {"agreeing_tokens", a.agreeing_tokens},
                     {"exact_match", a.exact_match()},
                     {"token_agreement", a.token_agreement()},
                     {"first_divergence", a.first_divergence},
                     {"mean_first_divergence", a.mean_first_divergence},
                     {"mean_kl", a.mean_kl}};
    }
    return {{"model", q.model},
            {"prompts", q.prompts},
            {"max_tokens", q.max_tokens},
            {"prompt_set", q.prompt_set},
            {"adapters", per}};
}

json manifest_json(const compressed_bank& bank, io::dtype storage, const json& files) {
    json modules = json::array();
    for (const auto& m : bank.modules)
        modules.push_back({{"path", m.path},
                           {"layer", m.layer},
                           {"module", m.short_name},
                           {"d_out", m.d_out},
                           {"d_in", m.d_in}});
    json adapters = json::array();
    for (const auto& a : bank.adapters) {
        json errors = json::array();
        for (double e : a.errors)
            errors.push_back(std::isnan(e) ? json() : json(e));
        adapters.push_back({{"name", a.name},
                            {"source", a.source},
                            {"base_model", a.base_model},
                            {"cluster", a.cluster},
                            {"source_rank", a.source_rank},
                            {"error", a.mean_error()},
                            {"errors", errors}});
    }
    json out = {{"format", k_format},
                {"version", bank.raw_adapters.empty() ? 1 : 2},
                {"created_by", std::string("lorafleet ") + LORAFLEET_VERSION},
                {"method", compress::to_string(bank.kind)},
                {"rank", bank.rank},
                {"clusters", bank.clusters},
                {"dtype", std::string(io::dtype_name(storage))},
                {"base", bank.base ? geometry_json(*bank.base) : json()},
                {"parameters", bank.parameters},
                {"mean_error", bank.mean_error()},
                {"max_error", bank.max_error()},
                {"modules", modules},
                {"adapters", adapters},
                {"files", files}};
    if (bank.quality) out["quality"] = quality_json(*bank.quality, bank.adapters);
    if (!bank.raw_adapters.empty()) out["raw_adapters"] = bank.raw_adapters;
    return out;
}

struct parsed_manifest {
    compressed_bank bank; // without bases / cores
    io::dtype storage = io::dtype::F16;
    std::vector<std::tuple<std::string, std::uint64_t, std::string>> files; // name, bytes, sha256
};

// cores.safetensors, or bases/cluster-NNN.safetensors exactly as cluster_file() spells a c < clusters.
bool is_bank_file_name(const std::string& name, int clusters) {
    if (name == k_cores) return true;
    const std::string prefix = "bases/cluster-", suffix = ".safetensors";
    if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        return false;
    const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
    if (digits.size() > 8 || digits.find_first_not_of("0123456789") != std::string::npos) return false;
    const int c = std::stoi(digits);
    return c < clusters && cluster_file(c) == name;
}

// A bank's own file: a regular file reached without any symlink below the bank folder.
void require_regular(const fs::path& dir, const std::string& name) {
    struct stat st {};
    if (name.find('/') != std::string::npos) {
        const auto sub = dir / name.substr(0, name.find('/'));
        if (::lstat(sub.c_str(), &st) != 0)
            throw format_error(dir.string(), "data file " + name + " is missing");
        if (!S_ISDIR(st.st_mode))
            throw format_error(dir.string(), "'" + name.substr(0, name.find('/')) +
                                                 "' is not a folder inside the bank (a symlink?)");
    }
    if (::lstat((dir / name).c_str(), &st) != 0) {
        if (name == "manifest.json") {
            if (!fs::exists(dir)) throw io_error(dir.string(), "no such bank folder");
            throw format_error(dir.string(), "not a bank: manifest.json is missing or unreadable");
        }
        throw format_error(dir.string(), "data file " + name + " is missing");
    }
    if (S_ISLNK(st.st_mode))
        throw format_error(dir.string(), name + " is a symlink; a bank's files must lie inside its folder");
    if (!S_ISREG(st.st_mode)) throw format_error(dir.string(), name + " is not a regular file");
}

double non_negative(const json& obj, const char* key, const manifest_reader& r) {
    const auto& v = r.field(obj, key);
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0)
        throw format_error(r.where, std::string("\"") + key + "\" must be a non-negative number");
    return v.get<double>();
}

// The optional "quality" section, strictly: every field typed and in range, counts consistent, and only
// adapters the bank has.
quality_section parse_quality(const json& j, const compressed_bank& b, const manifest_reader& manifest) {
    const manifest_reader r{manifest.where + ": quality section"};
    quality_section q;
    q.model = r.str(j, "model");
    q.prompts = int(r.integer(j, "prompts", 0, 1 << 24));
    q.max_tokens = int(r.integer(j, "max_tokens", 0, 1 << 24));
    q.prompt_set = r.str(j, "prompt_set");
    const auto& per = r.field(j, "adapters");
    if (!per.is_object()) throw format_error(r.where, "\"adapters\" must be an object");
    std::set<std::string> names;
    for (const auto& a : b.adapters)
        names.insert(a.name);
    for (const auto& [name, v] : per.items()) {
        if (!names.count(name)) throw format_error(r.where, "names an adapter the bank does not have");
        adapter_quality a;
        a.prompts = int(r.integer(v, "prompts", 0, 1 << 24));
        a.tokens = int(r.integer(v, "tokens", 0, std::int64_t(1) << 30));
        a.exact_matches = int(r.integer(v, "exact_matches", 0, a.prompts));
        a.agreeing_tokens = int(r.integer(v, "agreeing_tokens", 0, a.tokens));
        a.first_divergence = int(r.integer(v, "first_divergence", -1, 1 << 24));
        a.mean_first_divergence = non_negative(v, "mean_first_divergence", r);
        a.mean_kl = non_negative(v, "mean_kl", r);
        q.adapters.emplace(name, a);
    }
    return q;
}

parsed_manifest parse_manifest(const fs::path& dir) {
    const fs::path path = dir / "manifest.json";
    const manifest_reader r{path.string()};
    require_regular(dir, "manifest.json");
    const std::string text = io::read_text_file(path, io::max_json_file_bytes, "bank manifest");
    json j;
    try {
        j = json::parse(text);
    } catch (const json::exception& e) {
        throw format_error(r.where, std::string("not valid JSON: ") + e.what());
    }
    if (!j.is_object() || !j.contains("format") || j["format"] != k_format)
        throw format_error(r.where, "not a lorafleet bank manifest (\"format\" is not \"lorafleet-bank\")");
    const auto version = r.integer(j, "version", 1, 1 << 20);
    if (version > bank_format_version)
        throw unsupported_error(r.where, "bank format version " + std::to_string(version) +
                                             " is newer than this program's (" +
                                             std::to_string(bank_format_version) + ")");
    parsed_manifest out;
    auto& b = out.bank;
    const auto method_text = r.str(j, "method");
    try {
        b.kind = compress::parse_jd_method(method_text);
    } catch (const usage_error&) { // a bad manifest is a format error, not a usage error
        throw format_error(r.where, "unknown method \"" + method_text + "\"");
    }
    b.rank = int(r.integer(j, "rank", 1, 1 << 16));
    b.clusters = int(r.integer(j, "clusters", 1, 1 << 20));
    const auto dt = io::parse_dtype(r.str(j, "dtype"));
    if (!dt || !io::is_lora_float(*dt)) throw format_error(r.where, "\"dtype\" must be F32, F16 or BF16");
    out.storage = *dt;
    if (!r.field(j, "base").is_null()) b.base = geometry_from_json(j["base"], r);
    b.parameters = r.field(j, "parameters");
    for (const auto& m : r.array(j, "modules")) {
        bank_module mod;
        mod.path = r.str(m, "path");
        mod.layer = int(r.integer(m, "layer", 0, (1 << 20) - 1));
        mod.short_name = r.str(m, "module");
        mod.d_out = r.integer(m, "d_out", 1, std::int64_t(1) << 24);
        mod.d_in = r.integer(m, "d_in", 1, std::int64_t(1) << 24);
        b.modules.push_back(std::move(mod));
    }
    for (const auto& a : r.array(j, "adapters")) {
        bank_adapter ad;
        ad.name = r.str(a, "name");
        ad.source = r.str(a, "source");
        ad.base_model = r.str(a, "base_model");
        ad.cluster = int(r.integer(a, "cluster", 0, b.clusters - 1));
        ad.source_rank = int(r.integer(a, "source_rank", 0, 1 << 20));
        for (const auto& e : r.array(a, "errors")) {
            if (e.is_null())
                ad.errors.push_back(std::nan(""));
            else if (e.is_number() && std::isfinite(e.get<double>()) && e.get<double>() >= 0)
                ad.errors.push_back(e.get<double>());
            else
                throw format_error(r.where,
                                   "adapter '" + ad.name + "': errors must be non-negative numbers or null");
        }
        if (ad.errors.size() != b.modules.size())
            throw format_error(r.where, "adapter '" + ad.name + "': " + std::to_string(ad.errors.size()) +
                                            " errors for " + std::to_string(b.modules.size()) + " modules");
        b.adapters.push_back(std::move(ad));
    }
    if (j.contains("quality") && !j["quality"].is_null()) b.quality = parse_quality(j["quality"], b, r);
    if (version >= 2) { // version 1 has no raw adapters, whatever else the manifest holds
        std::set<std::string> names, raw;
        for (const auto& a : b.adapters)
            names.insert(a.name);
        for (const auto& v : r.array(j, "raw_adapters")) {
            if (!v.is_string()) throw format_error(r.where, "\"raw_adapters\" must hold adapter names");
            const auto name = v.get<std::string>();
            if (!names.count(name))
                throw format_error(r.where, "\"raw_adapters\" names an adapter the bank does not have");
            if (!raw.insert(name).second)
                throw format_error(r.where, "\"raw_adapters\" names an adapter twice");
            b.raw_adapters.push_back(name);
        }
    }
    std::set<std::string> seen;
    for (const auto& f : r.array(j, "files")) {
        const auto name = r.str(f, "name");
        if (!is_bank_file_name(name, b.clusters))
            throw format_error(r.where,
                               "lists a file that is not cores.safetensors or a cluster's bases file");
        if (!seen.insert(name).second) throw format_error(r.where, "lists " + name + " twice");
        out.files.emplace_back(name, std::uint64_t(r.integer(f, "bytes", 0, std::int64_t(1) << 50)),
                               r.str(f, "sha256"));
    }
    return out;
}

void fsync_path(const fs::path& p, int flags) {
    const int fd = ::open(p.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

} // namespace

void check_bank_target(const fs::path& dir_in, bool overwrite) {
    const fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
    std::error_code ec;
    if (fs::exists(fs::symlink_status(dir, ec))) {
        const bool is_bank = fs::exists(dir / "manifest.json", ec);
        const bool is_empty = fs::is_directory(dir, ec) && fs::is_empty(dir, ec);
        if (!is_bank && !is_empty)
            throw usage_error(dir.string(), "exists and is not a bank; refusing to replace it");
        if (is_bank && !overwrite)
            throw usage_error(dir.string(), "a bank already exists here (use --overwrite to replace it)");
    }
}

std::uint64_t write_bank(const fs::path& dir_in, const compressed_bank& bank,
                         const bank_write_options& options) {
    const fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
    check_bank(bank, dir.string(), bank.base);
    if (!io::is_lora_float(options.storage))
        throw usage_error(dir.string(), "bank dtype must be f32, f16 or bf16");
    check_bank_target(dir, options.overwrite);
    io::remove_stale_staging(dir);
    const fs::path staged = io::make_staging_dir(dir);
    std::error_code ec;
    try {
        fs::create_directory(staged / "bases");
        json files = json::array();
        std::uint64_t total = 0;
        auto add_file = [&](const std::string& name) {
            const auto p = staged / name;
            const auto bytes = fs::file_size(p);
            total += bytes;
            files.push_back({{"name", name}, {"bytes", bytes}, {"sha256", sha256_file_hex(p)}});
        };
        const auto r = std::int64_t(bank.rank);
        // cores.safetensors
        {
            std::vector<std::vector<std::byte>> storage;
            std::vector<io::tensor_data> tensors;
            storage.reserve(bank.modules.size());
            for (std::size_t m = 0; m < bank.modules.size(); ++m) {
                storage.push_back(io::encode_f32(bank.cores[m], options.storage));
                std::vector<std::int64_t> shape{std::int64_t(bank.adapters.size()), r};
                if (bank.kind == compress::jd_method::full) shape.push_back(r);
                tensors.push_back({bank.modules[m].path + ".sigma", options.storage, shape, storage.back()});
            }
            io::write_safetensors(staged / k_cores, std::move(tensors), {{"format", k_format}});
            add_file(k_cores);
        }
        for (int c = 0; c < bank.clusters; ++c) {
            std::vector<std::vector<std::byte>> storage;
            std::vector<io::tensor_data> tensors;
            storage.reserve(bank.modules.size() * 2);
            for (std::size_t m = 0; m < bank.modules.size(); ++m) {
                const auto& b = bank.bases[m][std::size_t(c)];
                if (b.empty()) continue;
                const auto& mod = bank.modules[m];
                storage.push_back(io::encode_f32(b.u, options.storage));
                tensors.push_back({mod.path + ".U", options.storage, {mod.d_out, r}, storage.back()});
                storage.push_back(io::encode_f32(b.vt, options.storage));
                tensors.push_back({mod.path + ".Vt", options.storage, {r, mod.d_in}, storage.back()});
            }
            io::write_safetensors(staged / cluster_file(c), std::move(tensors),
                                  {{"format", k_format}, {"cluster", std::to_string(c)}});
            add_file(cluster_file(c));
        }
        io::write_file_atomic(staged / "manifest.json",
                              manifest_json(bank, options.storage, files).dump(1) + "\n");
        fsync_path(staged / "bases", O_RDONLY | O_DIRECTORY);
        fsync_path(staged, O_RDONLY | O_DIRECTORY);
        // What goes into place is what every reader will accept: the staged folder, read back.
        read_bank(staged, {true, true, bank.base, true});
        io::swap_dir_into_place(staged, dir);
        return total;
    } catch (...) {
        fs::remove_all(staged, ec);
        throw;
    }
}

void update_bank_manifest(const fs::path& dir_in, const bank_manifest_update& update) {
    const fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
    // The manifest must be a bank's and name every adapter the update names.
    const auto parsed = parse_manifest(dir);
    if (update.quality)
        for (const auto& [name, a] : update.quality->adapters)
            if (!parsed.bank.find_adapter(name))
                throw usage_error(dir.string(), "the bank has no adapter named '" + name + "'");
    if (update.raw_adapters) {
        std::set<std::string> seen;
        for (const auto& name : *update.raw_adapters) {
            if (!parsed.bank.find_adapter(name))
                throw usage_error(dir.string(), "the bank has no adapter named '" + name + "'");
            if (!seen.insert(name).second)
                throw usage_error(dir.string(), "adapter '" + name + "' is named twice as served raw");
        }
    }
    const fs::path path = dir / "manifest.json";
    json j = json::parse(io::read_text_file(path, io::max_json_file_bytes, "bank manifest"));
    if (update.quality) j["quality"] = quality_json(*update.quality, parsed.bank.adapters);
    if (update.raw_adapters) {
        // Version 2 only when it names raw adapters, so a bank without them stays readable by version 1.
        j["version"] = update.raw_adapters->empty() ? 1 : 2;
        if (update.raw_adapters->empty())
            j.erase("raw_adapters");
        else
            j["raw_adapters"] = *update.raw_adapters;
    }
    // One file replaced by rename: a reader sees the old manifest or the new one. The data files and their
    // checksums are untouched.
    io::write_file_atomic(path, j.dump(1) + "\n");
}

void write_bank_quality(const fs::path& dir, const quality_section& quality) {
    update_bank_manifest(dir, {quality, std::nullopt});
}

bank_files_info read_bank_files_info(const fs::path& dir) {
    const auto parsed = parse_manifest(dir);
    bank_files_info info{parsed.storage, 0};
    for (const auto& f : parsed.files)
        info.data_bytes += std::get<1>(f);
    return info;
}

compressed_bank read_bank(const fs::path& dir, const bank_read_options& options) {
    auto parsed = parse_manifest(dir);
    auto& bank = parsed.bank;
    const auto where = dir.string();
    // Every data file listed, present, of the recorded size and (optionally) checksum.
    std::map<std::string, bool> listed;
    for (const auto& [name, bytes, sha] : parsed.files) {
        listed[name] = true;
        const auto p = dir / name;
        require_regular(dir, name);
        std::error_code ec;
        const auto size = fs::file_size(p, ec);
        if (ec) throw format_error(where, "data file " + name + " is missing");
        if (size != bytes)
            throw format_error(where, "data file " + name + " has " + std::to_string(size) +
                                          " bytes, manifest says " + std::to_string(bytes));
        if (options.verify_checksums && sha256_file_hex(p) != sha)
            throw format_error(where,
                               "data file " + name + " does not match its SHA-256 checksum (corrupted?)");
    }
    if (!listed.count(k_cores)) throw format_error(where, "manifest does not list cores.safetensors");
    if (listed.size() < std::size_t(bank.clusters) + 1)
        throw format_error(where, "manifest lists " + std::to_string(listed.size() - 1) +
                                      " bases files for " + std::to_string(bank.clusters) + " clusters");
    for (int c = 0; c < bank.clusters; ++c)
        if (!listed.count(cluster_file(c)))
            throw format_error(where, "manifest does not list " + cluster_file(c));
    if (!options.load_tensors) return std::move(bank);

    const auto r = std::int64_t(bank.rank);
    const auto n = std::int64_t(bank.adapters.size());
    auto load = [&](const io::safetensors_file& file, const std::string& name,
                    const std::vector<std::int64_t>& shape) {
        const auto& t = file.at(name);
        if (t.shape() != shape) {
            std::string want;
            for (auto s : shape)
                want += (want.empty() ? "" : ", ") + std::to_string(s);
            throw shape_mismatch(file.path().string(), "tensor '" + name + "' is not [" + want + "]");
        }
        if (!t.all_finite())
            throw validation_error(file.path().string(), "tensor '" + name + "' holds NaN or Inf");
        return t.to_f32();
    };
    const auto cores = io::safetensors_file::open(dir / k_cores);
    bank.cores.resize(bank.modules.size());
    bank.bases.assign(bank.modules.size(), std::vector<cluster_basis>(std::size_t(bank.clusters)));
    for (std::size_t m = 0; m < bank.modules.size(); ++m) {
        std::vector<std::int64_t> shape{n, r};
        if (bank.kind == compress::jd_method::full) shape.push_back(r);
        bank.cores[m] = load(*cores, bank.modules[m].path + ".sigma", shape);
    }
    for (int c = 0; c < bank.clusters; ++c) {
        const auto file = io::safetensors_file::open(dir / cluster_file(c));
        for (std::size_t m = 0; m < bank.modules.size(); ++m) {
            const auto& mod = bank.modules[m];
            if (!file->find(mod.path + ".U")) continue;
            auto& b = bank.bases[m][std::size_t(c)];
            b.u = load(*file, mod.path + ".U", {mod.d_out, r});
            b.vt = load(*file, mod.path + ".Vt", {r, mod.d_in});
        }
    }
    if (options.check) check_bank(bank, where, options.base);
    return std::move(bank);
}

} // namespace lorafleet::bank
