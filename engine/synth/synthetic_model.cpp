// synthetic_model: see the header. Sections: options and plan, the JSON files, drawing a tensor's chunks,
// streaming a shard, and the staged write of the whole folder.
#include "engine/synth/synthetic_model.hpp"

#include "engine/core/error.hpp"
#include "engine/core/float16.hpp"
#include "engine/core/random.hpp"
#include "engine/io/atomic_file.hpp"
#include "engine/synth/synthetic_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

namespace lorafleet::synth {

static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

const std::uint64_t stream_tag = stream_id("lorafleet.synth-model");

std::string torch_dtype_name(io::dtype t) {
    return t == io::dtype::BF16 ? "bfloat16" : t == io::dtype::F16 ? "float16" : "float32";
}

std::string gigabytes(std::uint64_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f GB", double(bytes) / 1e9);
    return buf;
}

// ---- The JSON files -------------------------------------------------------------------------------------

// The safetensors header of one shard: tensors sorted by name, data in that order, the JSON padded with
// spaces to a multiple of 8 bytes (as the safetensors library writes it). Returns the 8-byte length prefix
// and the header.
std::string shard_header(const std::vector<const synth_model_tensor*>& tensors, io::dtype dtype) {
    json h = json::object();
    h["__metadata__"] = {{"format", "pt"}};
    std::uint64_t offset = 0;
    for (const auto* t : tensors) {
        h[t->name] = {{"dtype", std::string(io::dtype_name(dtype))},
                      {"shape", t->shape},
                      {"data_offsets", {offset, offset + t->bytes}}};
        offset += t->bytes;
    }
    std::string text = h.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    std::uint64_t n = text.size();
    for (int i = 0; i < 8; ++i)
        out[std::size_t(i)] = char((n >> (8 * i)) & 0xff);
    return out + text;
}

std::string index_json(const synth_model_plan& plan) {
    json j;
    j["metadata"] = {{"total_size", plan.tensor_bytes}};
    json map = json::object();
    for (const auto& t : plan.tensors)
        map[t.name] = shard_file_name(t.shard, plan.shards);
    j["weight_map"] = std::move(map);
    return j.dump(2) + "\n";
}

std::string generation_config_json(int bos, int eos) {
    ordered_json j;
    j["bos_token_id"] = bos;
    j["eos_token_id"] = eos;
    return j.dump(2) + "\n";
}

// ---- Drawing a tensor -------------------------------------------------------------------------------------

// Elements [chunk * synthetic_chunk_elements, + count) of `t`, encoded as `dtype` into `out`.
void fill_chunk(const synth_model_tensor& t, std::int64_t chunk, std::int64_t count, io::dtype dtype,
                std::uint64_t seed, std::byte* out) {
    auto rng = random_stream::derive(seed, {stream_tag, stream_id(t.name), std::uint64_t(chunk)});
    for (std::int64_t i = 0; i < count; ++i) {
        const float v = t.sigma > 0 ? float(t.sigma * rng.normal()) : float(t.constant);
        if (dtype == io::dtype::F32) {
            std::memcpy(out + 4 * i, &v, 4);
        } else {
            const std::uint16_t h = dtype == io::dtype::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
            std::memcpy(out + 2 * i, &h, 2);
        }
    }
}

struct write_state {
    std::uint64_t done = 0;
    std::uint64_t total = 0;
    const synth_model_progress* progress = nullptr;
    void advance(std::uint64_t bytes) {
        done += bytes;
        if (*progress && !(*progress)(done, total)) throw cancelled_error("", "cancelled");
    }
};

// Streams one tensor into `w`: batches of `threads` chunks drawn in parallel, then written in order.
void write_tensor(io::atomic_file_writer& w, const synth_model_tensor& t, io::dtype dtype, std::uint64_t seed,
                  int threads, std::vector<std::vector<std::byte>>& buffers, write_state& state) {
    const std::int64_t numel = std::int64_t(t.bytes / io::dtype_size(dtype));
    const std::int64_t chunks = (numel + synthetic_chunk_elements - 1) / synthetic_chunk_elements;
    const std::size_t esize = io::dtype_size(dtype);
    for (std::int64_t first = 0; first < chunks; first += threads) {
        const int batch = int(std::min<std::int64_t>(threads, chunks - first));
        const auto count = [&](int b) {
            return std::min(synthetic_chunk_elements, numel - (first + b) * synthetic_chunk_elements);
        };
        std::vector<std::thread> workers;
        for (int b = 1; b < batch; ++b)
            workers.emplace_back(
                [&, b] { fill_chunk(t, first + b, count(b), dtype, seed, buffers[std::size_t(b)].data()); });
        fill_chunk(t, first, count(0), dtype, seed, buffers[0].data());
        for (auto& th : workers)
            th.join();
        std::uint64_t written = 0;
        for (int b = 0; b < batch; ++b) {
            const std::size_t n = std::size_t(count(b)) * esize;
            w.write(std::span<const std::byte>(buffers[std::size_t(b)].data(), n));
            written += n;
        }
        state.advance(written);
    }
}

int default_threads() {
    const unsigned hw = std::thread::hardware_concurrency();
    return int(std::clamp(hw, 1u, 4u));
}

// The nearest existing folder at or above `p` (where the free space is measured).
fs::path existing_ancestor(fs::path p) {
    std::error_code ec;
    p = fs::absolute(p, ec);
    while (!p.empty() && !fs::exists(p, ec) && p.has_parent_path() && p.parent_path() != p)
        p = p.parent_path();
    return p;
}

} // namespace

// ---- Options and plan -------------------------------------------------------------------------------------

void validate_synth_model_options(const synth_model_options& o) {
    if (o.dtype != io::dtype::F32 && o.dtype != io::dtype::F16 && o.dtype != io::dtype::BF16)
        throw usage_error("", "--dtype must be bf16, fp16 or fp32");
    if (o.layers < 0 || o.layers > o.geometry.num_layers)
        throw usage_error("", "--layers must be between 1 and " + std::to_string(o.geometry.num_layers) +
                                  " (the geometry's depth)");
    if (o.shard_bytes == 0) throw usage_error("", "the shard size must be at least one byte");
    if (o.threads < 0) throw usage_error("", "--threads must not be negative");
    if (o.geometry.rope_scaling)
        throw usage_error(o.geometry.name,
                          "rope_scaling is set: the engine does not implement scaled RoPE, so "
                          "a synthetic model of this geometry could not be served");
    if (o.out_dir.empty()) throw usage_error("", "--out is required");
    synthetic_special_ids(o.geometry);
}

std::string shard_file_name(int shard, int shards) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", shard + 1, shards);
    return buf;
}

synth_model_plan plan_synthetic_model(const synth_model_options& o) {
    validate_synth_model_options(o);
    synth_model_plan plan;
    plan.geometry = o.geometry;
    if (o.layers > 0) plan.geometry.num_layers = o.layers;
    const io::model_geometry& g = plan.geometry;
    const std::int64_t d = g.hidden_size;
    const std::size_t esize = io::dtype_size(o.dtype);
    const auto add = [&](std::string name, std::vector<std::int64_t> shape, double sigma, double constant) {
        synth_model_tensor t;
        t.name = std::move(name);
        t.shape = std::move(shape);
        t.sigma = sigma;
        t.constant = constant;
        std::uint64_t n = 1;
        for (auto s : t.shape)
            n *= std::uint64_t(s);
        t.bytes = n * esize;
        plan.tensors.push_back(std::move(t));
    };
    const double embed_sigma = 1.0 / std::sqrt(double(d));
    add("model.embed_tokens.weight", {g.vocab_size, d}, embed_sigma, 0.0);
    for (int l = 0; l < g.num_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", {d}, 0.0, 1.0);
        for (const auto& m : g.linear_modules()) {
            const auto shape = *g.linear_shape(m);
            const bool attn = m == "q_proj" || m == "k_proj" || m == "v_proj" || m == "o_proj";
            const std::string name = p + (attn ? "self_attn." : "mlp.") + m;
            add(name + ".weight", {shape.d_out, shape.d_in}, 1.0 / std::sqrt(double(shape.d_in)), 0.0);
            if (g.attention_bias && (m == "q_proj" || m == "k_proj" || m == "v_proj"))
                add(name + ".bias", {shape.d_out}, 0.0, 0.0);
            if (m == "o_proj") add(p + "post_attention_layernorm.weight", {d}, 0.0, 1.0);
        }
    }
    add("model.norm.weight", {d}, 0.0, 1.0);
    if (!g.tie_word_embeddings) add("lm_head.weight", {g.vocab_size, d}, 1.0 / std::sqrt(double(d)), 0.0);

    // Shards in model order: a new shard when the next tensor would overflow a non-empty one.
    std::uint64_t in_shard = 0;
    int shard = 0;
    for (auto& t : plan.tensors) {
        if (in_shard > 0 && in_shard + t.bytes > o.shard_bytes) {
            ++shard;
            in_shard = 0;
        }
        t.shard = shard;
        in_shard += t.bytes;
        plan.tensor_bytes += t.bytes;
    }
    plan.shards = shard + 1;
    return plan;
}

std::string synthetic_config_json(const io::model_geometry& g, io::dtype dtype, std::uint64_t seed) {
    const auto [bos, eos] = synthetic_special_ids(g);
    ordered_json j;
    j["architectures"] = {g.architecture};
    j["model_type"] = g.model_type;
    j["hidden_size"] = g.hidden_size;
    j["intermediate_size"] = g.intermediate_size;
    j["num_hidden_layers"] = g.num_layers;
    j["num_attention_heads"] = g.num_heads;
    j["num_key_value_heads"] = g.num_kv_heads;
    if (g.head_dim * g.num_heads != g.hidden_size) j["head_dim"] = g.head_dim;
    j["vocab_size"] = g.vocab_size;
    j["max_position_embeddings"] = g.max_position_embeddings > 0 ? g.max_position_embeddings : 2048;
    j["rms_norm_eps"] = g.rms_norm_eps;
    j["rope_theta"] = g.rope_theta;
    j["rope_scaling"] = nullptr;
    j["hidden_act"] = "silu";
    if (g.model_type == "qwen2") {
        j["use_sliding_window"] = false;
    } else {
        j["attention_bias"] = g.attention_bias;
        j["mlp_bias"] = false;
    }
    if (g.model_type == "mistral") j["sliding_window"] = nullptr;
    j["tie_word_embeddings"] = g.tie_word_embeddings;
    j["bos_token_id"] = bos;
    j["eos_token_id"] = eos;
    j["torch_dtype"] = torch_dtype_name(dtype);
    j["use_cache"] = true;
    j["initializer_range"] = 0.02;
    // Provenance: random weights, not a trained model (transformers keeps unknown keys as attributes).
    j["lorafleet_synthetic"] = {{"seed", seed},
                                {"weights", "N(0, 1/d_in) linears, N(0, 1/hidden) embeddings and lm_head, "
                                            "norms 1, biases 0"}};
    return j.dump(2) + "\n";
}

// ---- The staged write -----------------------------------------------------------------------------------

synth_model_result write_synthetic_model(const synth_model_options& options,
                                         const synth_model_progress& progress) {
    synth_model_result result;
    result.plan = plan_synthetic_model(options);
    const synth_model_plan& plan = result.plan;
    // "DIR/" names DIR itself (a staging folder needs the target's name).
    const fs::path target = options.out_dir.has_filename() ? options.out_dir : options.out_dir.parent_path();

    std::error_code ec;
    if (fs::exists(fs::symlink_status(target, ec))) {
        if (!fs::is_directory(target, ec))
            throw usage_error(path_string(target), "exists and is not a folder");
        if (!fs::is_empty(target, ec)) {
            if (!options.force)
                throw usage_error(path_string(target), "is not empty (use --force to replace it)");
            if (!fs::is_regular_file(target / "config.json", ec))
                throw usage_error(path_string(target), "is not a model folder (no config.json): --force "
                                                       "replaces only a model folder");
        }
    }

    // Everything but the tensors' data, built up front so the space check knows the exact size.
    const synthetic_tokenizer_files tokenizer = make_synthetic_tokenizer(plan.geometry);
    std::vector<std::pair<std::string, std::string>> small_files{
        {"config.json", synthetic_config_json(plan.geometry, options.dtype, options.seed)},
        {"generation_config.json", generation_config_json(tokenizer.bos_id, tokenizer.eos_id)},
        {"model.safetensors.index.json", index_json(plan)},
        {"tokenizer.json", tokenizer.tokenizer_json},
        {"tokenizer_config.json", tokenizer.tokenizer_config_json},
        {"special_tokens_map.json", tokenizer.special_tokens_map_json},
    };
    std::vector<std::vector<const synth_model_tensor*>> shard_tensors(std::size_t(plan.shards));
    for (const auto& t : plan.tensors)
        shard_tensors[std::size_t(t.shard)].push_back(&t);
    std::vector<std::string> headers;
    std::uint64_t needed = plan.tensor_bytes;
    for (auto& list : shard_tensors) {
        std::sort(list.begin(), list.end(), [](auto* a, auto* b) { return a->name < b->name; });
        headers.push_back(shard_header(list, options.dtype));
        needed += headers.back().size();
    }
    for (const auto& [name, text] : small_files)
        needed += text.size();
    result.bytes = needed;

    const fs::path measured =
        existing_ancestor(target.parent_path().empty() ? fs::path(".") : target.parent_path());
    const fs::space_info space = fs::space(measured, ec);
    if (!ec && space.available < needed)
        throw io_error(path_string(target), "not enough free space: the model needs " + gigabytes(needed) +
                                                ", " + gigabytes(space.available) + " are available on " +
                                                path_string(measured));

    io::remove_stale_staging(target);
    const fs::path staging = io::make_staging_dir(target);
    try {
        const int threads = options.threads > 0 ? options.threads : default_threads();
        std::vector<std::vector<std::byte>> buffers(
            std::size_t(threads),
            std::vector<std::byte>(std::size_t(synthetic_chunk_elements) * io::dtype_size(options.dtype)));
        write_state state;
        state.total = plan.tensor_bytes;
        state.progress = &progress;
        for (int s = 0; s < plan.shards; ++s) {
            io::atomic_file_writer w(staging / shard_file_name(s, plan.shards));
            w.write(std::string_view(headers[std::size_t(s)]));
            for (const auto* t : shard_tensors[std::size_t(s)])
                write_tensor(w, *t, options.dtype, options.seed, threads, buffers, state);
            w.commit();
        }
        for (const auto& [name, text] : small_files)
            io::write_file_atomic(staging / name, std::string_view(text));
        io::swap_dir_into_place(staging, target);
    } catch (...) {
        fs::remove_all(staging, ec);
        throw;
    }
    return result;
}

} // namespace lorafleet::synth
