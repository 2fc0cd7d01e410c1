// Synthetic PEFT LoRA fleets with planted groups (the structure model is in synthetic_fleet.hpp).
// Sections: folder checks, small kernels, group bases (cached while a group is in flight), one adapter's
// tensors, adapter_config.json; then the public functions: options and plan, the parallel driver.
// Invariants: every random number comes from a stream keyed by (seed, purpose, ids), never from a stream
// shared between adapters, so output does not depend on N, thread count or scheduling; all arithmetic is
// double in a fixed order (no BLAS) and rounded to float once, right before encoding.
#include "engine/synth/synthetic_fleet.hpp"

#include "engine/core/error.hpp"
#include "engine/core/random.hpp"
#include "engine/io/atomic_file.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <thread>

namespace lorafleet::synth {
namespace {

namespace fs = std::filesystem;

// First id of every derived stream: no two uses of the seed ever share random numbers.
enum stream_purpose : std::uint64_t {
    purpose_assign = 1,    // (K, block): the permutation of groups within a block of K adapters
    purpose_basis_in = 2,  // (layer, module, group): P_g
    purpose_basis_out = 3, // (layer, module, group): Q_g
    purpose_canonical = 4, // (layer, module, group): C_g of the shared A
    purpose_core_a = 5,    // (adapter, layer, module): C_i
    purpose_core_b = 6,    // (adapter, layer, module): D_i
    purpose_noise_a = 7,   // (adapter, layer, module): E_A
    purpose_noise_b = 8,   // (adapter, layer, module): E_B
};

constexpr double b_entry_rms = 1e-2; // typical |lora_B| entry of a trained adapter

bool is_mlp_module(std::string_view name) {
    return name == "gate_proj" || name == "up_proj" || name == "down_proj";
}

int plan_layers(const synth_options& o) {
    return o.layers > 0 ? o.layers : o.geometry.num_layers;
}

int default_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return static_cast<int>(std::clamp(hw, 1u, 4u));
}

// ---- folder checks ---------------------------------------------------------------------------------

bool is_adapter_folder_name(const std::string& name) {
    constexpr std::string_view prefix = "adapter-";
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
    return std::all_of(name.begin() + prefix.size(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A folder holding nothing but what this writer puts there, so removing it loses nothing of the user's.
bool holds_only_synth_files(const fs::path& dir) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        const std::string n = e.path().filename().string();
        if (!e.is_regular_file() || (n != "adapter_config.json" && n != "adapter_model.safetensors"))
            return false;
    }
    return !ec;
}

// Refuses a non-empty folder unless overwrite is set; with overwrite, removes stale synthetic adapter
// folders beyond the new fleet so the folder holds exactly N adapters afterwards.
void prepare_out_dir(const synth_options& o) {
    const fs::path& dir = o.out_dir;
    if (dir.empty()) throw usage_error("", "no output folder given");
    std::error_code ec;
    const auto st = fs::status(dir, ec);
    if (!fs::exists(st)) {
        fs::create_directories(dir, ec);
        if (ec) throw io_error(dir.string(), "cannot create folder: " + ec.message());
        return;
    }
    if (!fs::is_directory(st)) throw usage_error(dir.string(), "exists and is not a folder");
    std::vector<fs::path> adapter_dirs;
    int other = 0;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
        if (e.is_directory() && is_adapter_folder_name(e.path().filename().string()))
            adapter_dirs.push_back(e.path());
        else
            ++other;
    }
    if (ec) throw io_error(dir.string(), "cannot list folder: " + ec.message());
    if (adapter_dirs.empty() && other == 0) return;
    if (!o.overwrite)
        throw usage_error(dir.string(), "is not empty (" + std::to_string(adapter_dirs.size()) +
                                            " adapter folders, " + std::to_string(other) +
                                            " other entries); refusing to overwrite (use --overwrite)");
    std::set<std::string> keep;
    for (int i = 0; i < o.adapters; ++i)
        keep.insert(adapter_folder_name(i, o.adapters));
    for (const auto& p : adapter_dirs) {
        if (keep.count(p.filename().string()) || !holds_only_synth_files(p)) continue;
        fs::remove_all(p, ec);
        if (ec) throw io_error(p.string(), "cannot remove stale adapter folder: " + ec.message());
    }
}

// ---- small kernels ---------------------------------------------------------------------------------
// Unrolled by four because -O2's vectorizer (cost model "very-cheap") skips loops of unknown length while
// the unrolled bodies are vectorized as blocks. The summation order is fixed by the code (four partial sums
// combined as (s0 + s1) + (s2 + s3)), so results are the same bits whatever the compiler vectorizes.

// y[0..n) += alpha * x[0..n), x float or double.
template <class X> void axpy(double alpha, const X* x, double* y, std::size_t n) {
    std::size_t t = 0;
    for (; t + 4 <= n; t += 4) {
        y[t] += alpha * x[t];
        y[t + 1] += alpha * x[t + 1];
        y[t + 2] += alpha * x[t + 2];
        y[t + 3] += alpha * x[t + 3];
    }
    for (; t < n; ++t)
        y[t] += alpha * x[t];
}

double dot(const double* x, const double* y, std::size_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    std::size_t t = 0;
    for (; t + 4 <= n; t += 4) {
        s0 += x[t] * y[t];
        s1 += x[t + 1] * y[t + 1];
        s2 += x[t + 2] * y[t + 2];
        s3 += x[t + 3] * y[t + 3];
    }
    for (; t < n; ++t)
        s0 += x[t] * y[t];
    return (s0 + s1) + (s2 + s3);
}

// ---- group bases -----------------------------------------------------------------------------------

struct module_spec {
    std::string name; // q_proj
    std::uint64_t key = 0;
    int layer = 0;
    std::int64_t d_in = 0;
    std::int64_t d_out = 0;
    std::string a_tensor; // base_model.model.model.layers.{L}.self_attn.q_proj.lora_A.weight
    std::string b_tensor;
};

std::vector<module_spec> module_specs(const synth_options& o, int layers) {
    std::vector<module_spec> out;
    for (int layer = 0; layer < layers; ++layer) {
        for (const auto& m : o.modules) {
            const auto shape = o.geometry.linear_shape(m); // validated: present
            const std::string path = "base_model.model.model.layers." + std::to_string(layer) +
                                     (is_mlp_module(m) ? ".mlp." : ".self_attn.") + m;
            out.push_back({m, stream_id(m), layer, shape->d_in, shape->d_out, path + ".lora_A.weight",
                           path + ".lora_B.weight"});
        }
    }
    return out;
}

struct module_basis {
    std::vector<float> p_t;          // [r, d_in]  rows orthonormal: P_gᵀ
    std::vector<float> q_t;          // [r, d_out] rows orthonormal: Q_gᵀ
    std::vector<double> canonical_c; // [r, r]     C_g of the group's shared A
};
using group_bases = std::vector<module_basis>; // [module_specs().size()]

// r orthonormal rows of length d (r <= d) from Gaussian rows: modified Gram-Schmidt, run twice so the
// rows are orthonormal to working precision even when a row is nearly dependent on earlier ones.
std::vector<float> orthonormal_rows(random_stream rng, int r, std::int64_t d) {
    const auto n = static_cast<std::size_t>(d);
    std::vector<double> v(static_cast<std::size_t>(r) * n); // [r, d]
    rng.fill_normal(v);
    for (int k = 0; k < r; ++k) {
        double* vk = v.data() + k * n;
        for (int pass = 0; pass < 2; ++pass) {
            for (int j = 0; j < k; ++j) {
                const double* vj = v.data() + j * n;
                axpy(-dot(vj, vk, n), vj, vk, n);
            }
            const double inv = 1.0 / std::sqrt(dot(vk, vk, n));
            for (std::size_t t = 0; t < n; ++t)
                vk[t] *= inv;
        }
    }
    return std::vector<float>(v.begin(), v.end());
}

group_bases build_group_bases(const synth_options& o, const std::vector<module_spec>& specs, int group) {
    const auto g = static_cast<std::uint64_t>(group);
    const int r = o.rank;
    group_bases out(specs.size());
    for (std::size_t s = 0; s < specs.size(); ++s) {
        const auto& sp = specs[s];
        const auto layer = static_cast<std::uint64_t>(sp.layer);
        auto& mb = out[s];
        mb.p_t =
            orthonormal_rows(random_stream::derive(o.seed, {purpose_basis_in, layer, sp.key, g}), r, sp.d_in);
        mb.q_t = orthonormal_rows(random_stream::derive(o.seed, {purpose_basis_out, layer, sp.key, g}), r,
                                  sp.d_out);
        mb.canonical_c.resize(static_cast<std::size_t>(r * r));
        random_stream::derive(o.seed, {purpose_canonical, layer, sp.key, g})
            .fill_normal(mb.canonical_c, std::sqrt(1.0 / r));
    }
    return out;
}

// Bases of each group, built by the first worker that needs them and dropped when the group's last adapter
// is written. Workers take adapters in group order, so at most about one group per thread is alive.
class basis_cache {
public:
    basis_cache(const synth_options& o, const std::vector<module_spec>& specs, const std::vector<int>& groups)
        : m_options(o), m_specs(specs),
          m_slots(static_cast<std::size_t>(*std::max_element(groups.begin(), groups.end()) + 1)) {
        for (auto& s : m_slots)
            s = std::make_unique<slot>();
        for (int g : groups)
            ++m_slots[static_cast<std::size_t>(g)]->remaining;
    }

    std::shared_ptr<const group_bases> acquire(int g) {
        slot& s = *m_slots[static_cast<std::size_t>(g)];
        std::lock_guard lock(s.mutex); // others needing this group wait for the one building it
        if (!s.bases) s.bases = std::make_shared<const group_bases>(build_group_bases(m_options, m_specs, g));
        return s.bases;
    }

    void release(int g) {
        slot& s = *m_slots[static_cast<std::size_t>(g)];
        std::lock_guard lock(s.mutex);
        if (--s.remaining == 0) s.bases.reset();
    }

private:
    struct slot {
        std::mutex mutex;
        std::shared_ptr<const group_bases> bases;
        int remaining = 0; // adapters of the group not yet written
    };
    const synth_options& m_options;
    const std::vector<module_spec>& m_specs;
    std::vector<std::unique_ptr<slot>> m_slots;
};

// ---- one adapter -----------------------------------------------------------------------------------

double frobenius(std::span<const double> v) {
    return std::sqrt(dot(v.data(), v.data(), v.size()));
}

// clean += E with E Gaussian and ||E|| = relative * ||clean|| exactly.
void add_relative_noise(std::span<double> clean, random_stream rng, double relative,
                        std::vector<double>& scratch) {
    scratch.resize(clean.size());
    rng.fill_normal(scratch);
    const double noise_norm = frobenius(scratch);
    if (noise_norm == 0.0) return;
    const double scale = relative * frobenius(clean) / noise_norm;
    axpy(scale, scratch.data(), clean.data(), clean.size());
}

// Per-thread buffers reused across modules and adapters.
struct scratch_space {
    std::vector<double> c, d;  // [r, r]
    std::vector<double> a;     // [r, d_in]
    std::vector<double> b_t;   // [r, d_out]  Bᵀ, so that B = Q D is a sum of contiguous rows
    std::vector<double> noise; // like a or b_t
    std::vector<float> a_f32;  // [r, d_in]
    std::vector<float> b_f32;  // [d_out, r]
};

// Fills s.a_f32 (lora_A, [r, d_in]) and s.b_f32 (lora_B, [d_out, r]) for one module of adapter `index`.
void generate_module(const synth_options& o, const module_spec& sp, const module_basis& basis, int index,
                     bool shared_a, scratch_space& s) {
    const int r = o.rank;
    const std::size_t rr = static_cast<std::size_t>(r) * r;
    const auto i = static_cast<std::uint64_t>(index);
    const auto layer = static_cast<std::uint64_t>(sp.layer);
    const auto d_in = static_cast<std::size_t>(sp.d_in);
    const auto d_out = static_cast<std::size_t>(sp.d_out);

    // A = C Pᵀ: row a of A is sum_k C[a, k] * (row k of Pᵀ).
    s.c.resize(rr);
    if (shared_a)
        std::copy(basis.canonical_c.begin(), basis.canonical_c.end(), s.c.begin());
    else
        random_stream::derive(o.seed, {purpose_core_a, i, layer, sp.key})
            .fill_normal(s.c, std::sqrt(1.0 / r));
    s.a.assign(r * d_in, 0.0);
    for (int a = 0; a < r; ++a) {
        double* row = s.a.data() + a * d_in;
        for (int k = 0; k < r; ++k)
            axpy(s.c[a * r + k], basis.p_t.data() + k * d_in, row, d_in);
    }
    if (o.noise > 0.0 && !shared_a)
        add_relative_noise(s.a, random_stream::derive(o.seed, {purpose_noise_a, i, layer, sp.key}), o.noise,
                           s.noise);

    // B = Q D, built as Bᵀ = Dᵀ Qᵀ: row b of Bᵀ is sum_k D[k, b] * (row k of Qᵀ).
    s.d.resize(rr);
    random_stream::derive(o.seed, {purpose_core_b, i, layer, sp.key})
        .fill_normal(s.d, b_entry_rms * std::sqrt(static_cast<double>(d_out) / r));
    s.b_t.assign(r * d_out, 0.0);
    for (int b = 0; b < r; ++b) {
        double* row = s.b_t.data() + b * d_out;
        for (int k = 0; k < r; ++k)
            axpy(s.d[k * r + b], basis.q_t.data() + k * d_out, row, d_out);
    }
    if (o.noise > 0.0)
        add_relative_noise(s.b_t, random_stream::derive(o.seed, {purpose_noise_b, i, layer, sp.key}), o.noise,
                           s.noise);

    s.a_f32.assign(s.a.begin(), s.a.end());
    s.b_f32.resize(d_out * r);
    for (int b = 0; b < r; ++b)
        for (std::size_t t = 0; t < d_out; ++t)
            s.b_f32[t * r + b] = static_cast<float>(s.b_t[b * d_out + t]);
}

struct adapter_job {
    int index = 0;
    int group = 0;
    bool shared_a = false;
};

// Writes one adapter folder; returns the bytes written.
std::uint64_t write_adapter(const synth_options& o, const synth_plan& plan,
                            const std::vector<module_spec>& specs, const group_bases& bases,
                            const std::string& config_json, const adapter_job& job, scratch_space& s) {
    const fs::path dir = o.out_dir / adapter_folder_name(job.index, o.adapters);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw io_error(dir.string(), "cannot create folder: " + ec.message());

    std::vector<std::vector<std::byte>> storage; // encoded tensors; the spans below point into these
    storage.reserve(2 * specs.size());
    std::vector<io::tensor_data> tensors;
    tensors.reserve(2 * specs.size());
    for (std::size_t m = 0; m < specs.size(); ++m) {
        const auto& sp = specs[m];
        generate_module(o, sp, bases[m], job.index, job.shared_a, s);
        storage.push_back(io::encode_f32(s.a_f32, o.dtype));
        tensors.push_back({sp.a_tensor, o.dtype, {o.rank, sp.d_in}, storage.back()});
        storage.push_back(io::encode_f32(s.b_f32, o.dtype));
        tensors.push_back({sp.b_tensor, o.dtype, {sp.d_out, o.rank}, storage.back()});
    }
    const std::map<std::string, std::string> metadata{
        {"format", "pt"},
        {metadata_group, std::to_string(job.group)},
        {metadata_clusters, std::to_string(plan.clusters)},
        {metadata_shared_a, job.shared_a ? "true" : "false"},
        {metadata_seed, std::to_string(o.seed)},
        {metadata_index, std::to_string(job.index)},
    };
    // Weights first, config last: a folder with an adapter_config.json always has its weights.
    const fs::path weights = dir / "adapter_model.safetensors";
    const fs::path config = dir / "adapter_config.json";
    io::write_safetensors(weights, std::move(tensors), metadata);
    io::write_file_atomic(config, config_json);
    return fs::file_size(weights) + fs::file_size(config);
}

// ---- adapter_config.json -----------------------------------------------------------------------------

// The keys PEFT's LoraConfig writes (all understood by PEFT >= 0.9), sorted and 2-space indented with
// ASCII escapes like Python's json.dumps(indent=2, sort_keys=True); no trailing newline, as PEFT.
std::string adapter_config_json(const synth_options& o, int layers) {
    using nlohmann::json;
    json j = json::object(); // std::map-backed: keys come out sorted
    j["alpha_pattern"] = json::object();
    j["auto_mapping"] = nullptr;
    // A geometry read from DIR/config.json names the model folder, which is what PEFT loads a base from.
    const fs::path geometry_path(o.geometry.name);
    j["base_model_name_or_path"] =
        geometry_path.filename() == "config.json" && geometry_path.has_parent_path()
            ? geometry_path.parent_path().string()
            : o.geometry.name;
    j["bias"] = "none";
    j["fan_in_fan_out"] = false;
    j["inference_mode"] = true;
    j["init_lora_weights"] = true;
    j["layers_pattern"] = nullptr;
    if (layers < o.geometry.num_layers) {
        // Only the first `layers` layers carry weights: tell PEFT so it does not create empty LoRAs
        // elsewhere.
        std::vector<int> idx(static_cast<std::size_t>(layers));
        std::iota(idx.begin(), idx.end(), 0);
        j["layers_to_transform"] = idx;
    } else {
        j["layers_to_transform"] = nullptr;
    }
    if (o.alpha == std::floor(o.alpha) && std::fabs(o.alpha) < 1e15)
        j["lora_alpha"] = static_cast<long long>(o.alpha); // PEFT configs usually hold an int
    else
        j["lora_alpha"] = o.alpha;
    j["lora_dropout"] = 0.0;
    j["modules_to_save"] = nullptr;
    j["peft_type"] = "LORA";
    j["r"] = o.rank;
    j["rank_pattern"] = json::object();
    j["revision"] = nullptr;
    std::vector<std::string> targets = o.modules;
    std::sort(targets.begin(), targets.end());
    j["target_modules"] = targets;
    j["task_type"] = "CAUSAL_LM";
    j["use_dora"] = false;
    j["use_rslora"] = false;
    return j.dump(2, ' ', true);
}

} // namespace

// ---- options and plan ------------------------------------------------------------------------------

int default_clusters(int adapters) {
    return std::max(1, adapters / 40);
}

std::string adapter_folder_name(int index, int adapters) {
    const std::string last = std::to_string(std::max(adapters - 1, 0));
    const std::size_t width = std::max<std::size_t>(4, last.size());
    std::string digits = std::to_string(index);
    if (digits.size() < width) digits.insert(0, width - digits.size(), '0');
    return "adapter-" + digits;
}

void validate_synth_options(const synth_options& o) {
    const auto& geo = o.geometry;
    const std::string geo_name = geo.name.empty() ? "the geometry" : geo.name;
    if (o.adapters < 1)
        throw usage_error("", "adapters must be at least 1, got " + std::to_string(o.adapters));
    if (geo.num_layers < 1) throw usage_error("", geo_name + " has no layers");
    if (o.modules.empty()) throw usage_error("", "no modules given");
    std::set<std::string> seen;
    std::int64_t min_dim = 0;
    std::string min_module;
    for (const auto& m : o.modules) {
        if (!seen.insert(m).second) throw usage_error("", "module '" + m + "' is listed twice");
        const auto shape = geo.linear_shape(m);
        if (!shape) {
            std::string known;
            for (const auto& k : geo.linear_modules())
                known += (known.empty() ? "" : ", ") + k;
            throw usage_error("", "unknown module '" + m + "' for " + geo_name + " (known: " + known + ")");
        }
        const std::int64_t d = std::min(shape->d_in, shape->d_out);
        if (min_module.empty() || d < min_dim) {
            min_dim = d;
            min_module = m;
        }
    }
    if (o.rank < 1 || o.rank > min_dim)
        throw usage_error("", "rank must be between 1 and min(d_in, d_out) = " + std::to_string(min_dim) +
                                  " of " + min_module + " in " + geo_name + ", got " +
                                  std::to_string(o.rank));
    if (o.clusters < 0 || o.clusters > o.adapters)
        throw usage_error("", "clusters must be between 1 and the number of adapters (" +
                                  std::to_string(o.adapters) + "), got " + std::to_string(o.clusters));
    if (!std::isfinite(o.noise) || o.noise < 0.0)
        throw usage_error("", "noise must be a finite number >= 0, got " + std::to_string(o.noise));
    if (!std::isfinite(o.alpha) || o.alpha <= 0.0)
        throw usage_error("", "alpha must be a finite number > 0, got " + std::to_string(o.alpha));
    if (!(o.shared_a_fraction >= 0.0 && o.shared_a_fraction <= 1.0))
        throw usage_error("", "shared-A fraction must be between 0 and 1, got " +
                                  std::to_string(o.shared_a_fraction));
    if (!io::is_lora_float(o.dtype))
        throw usage_error("", "dtype must be F32, F16 or BF16, got " + std::string(io::dtype_name(o.dtype)));
    if (o.layers < 0 || o.layers > geo.num_layers)
        throw usage_error("", "layers must be between 1 and " + std::to_string(geo.num_layers) +
                                  " (0: all), got " + std::to_string(o.layers));
    if (o.threads < 0) throw usage_error("", "threads must be >= 0, got " + std::to_string(o.threads));
}

synth_plan plan_synthetic_fleet(const synth_options& o) {
    validate_synth_options(o);
    synth_plan plan;
    const int n = o.adapters;
    const int k = o.clusters > 0 ? o.clusters : default_clusters(n);
    plan.clusters = k;
    plan.layers = plan_layers(o);
    plan.group.resize(static_cast<std::size_t>(n));
    plan.member.resize(static_cast<std::size_t>(n));
    plan.shared_a.resize(static_cast<std::size_t>(n));
    std::vector<int> perm(static_cast<std::size_t>(k));
    for (int block = 0; block * k < n; ++block) {
        // Fisher-Yates over the K groups, from this block's own stream: block b never depends on N.
        std::iota(perm.begin(), perm.end(), 0);
        auto rng = random_stream::derive(
            o.seed, {purpose_assign, static_cast<std::uint64_t>(k), static_cast<std::uint64_t>(block)});
        for (int t = k - 1; t > 0; --t)
            std::swap(perm[t], perm[rng.below(static_cast<std::uint64_t>(t) + 1)]);
        const double f = o.shared_a_fraction;
        const bool shared = std::ceil((block + 1) * f) > std::ceil(block * f);
        for (int p = 0; p < k && block * k + p < n; ++p) {
            const auto i = static_cast<std::size_t>(block * k + p);
            plan.group[i] = perm[p];
            plan.member[i] = block;
            plan.shared_a[i] = shared;
        }
    }
    return plan;
}

// ---- the parallel driver ---------------------------------------------------------------------------

synth_result write_synthetic_fleet(const synth_options& o, const synth_progress& progress) {
    synth_result result;
    result.plan = plan_synthetic_fleet(o); // validates before anything touches the disk
    const synth_plan& plan = result.plan;
    prepare_out_dir(o);

    const int n = o.adapters;
    const auto specs = module_specs(o, plan.layers);
    const std::string config_json = adapter_config_json(o, plan.layers);
    std::vector<adapter_job> jobs(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i)
        jobs[i] = {i, plan.group[i], plan.shared_a[i]};
    // Group order keeps few groups' bases alive at once (each is built once); index order within a group.
    std::stable_sort(jobs.begin(), jobs.end(),
                     [](const adapter_job& a, const adapter_job& b) { return a.group < b.group; });
    basis_cache cache(o, specs, plan.group);

    struct shared_state {
        std::mutex mutex;
        std::condition_variable changed;
        int done = 0;
        int workers_left = 0;
        std::uint64_t bytes = 0;
        std::exception_ptr failure;
        std::atomic<bool> stop{false};
        std::atomic<int> next{0};
    } st;

    const auto worker = [&] {
        scratch_space scratch;
        while (!st.stop.load()) {
            const int k = st.next.fetch_add(1);
            if (k >= n) break;
            const adapter_job& job = jobs[static_cast<std::size_t>(k)];
            try {
                std::uint64_t bytes = 0;
                {
                    const auto bases = cache.acquire(job.group);
                    bytes = write_adapter(o, plan, specs, *bases, config_json, job, scratch);
                }
                cache.release(job.group);
                std::lock_guard lock(st.mutex);
                ++st.done;
                st.bytes += bytes;
            } catch (...) {
                std::lock_guard lock(st.mutex);
                if (!st.failure) st.failure = std::current_exception();
                st.stop = true;
            }
            st.changed.notify_all();
        }
        std::lock_guard lock(st.mutex);
        --st.workers_left;
        st.changed.notify_all();
    };

    const int threads = std::min(o.threads > 0 ? o.threads : default_threads(), n);
    st.workers_left = threads;
    {
        std::vector<std::jthread> pool; // joins on every exit path, after `stop_guard` has set stop
        struct stop_on_exit {
            shared_state& st;
            ~stop_on_exit() { st.stop = true; }
        } stop_guard{st};
        for (int t = 0; t < threads; ++t)
            pool.emplace_back(worker);

        int reported = -1;
        for (;;) {
            int done = 0;
            bool finished = false;
            {
                std::unique_lock lock(st.mutex);
                st.changed.wait(lock, [&] { return st.done != reported || st.workers_left == 0; });
                done = st.done;
                finished = st.workers_left == 0;
            }
            if (done != reported) {
                reported = done;
                if (progress && !st.stop && !progress(done, n)) st.stop = true;
            }
            if (finished) break;
        }
    }
    if (st.failure) std::rethrow_exception(st.failure);
    if (st.done < n)
        throw cancelled_error(o.out_dir.string(), "cancelled after " + std::to_string(st.done) + " of " +
                                                      std::to_string(n) + " adapters");
    result.bytes = st.bytes;
    return result;
}

} // namespace lorafleet::synth
