// A random-weight HuggingFace model folder at full size, so the real serving engine can be measured at a
// real geometry (7B, 8B, 1.1B) without downloading a checkpoint. The folder holds what transformers and our
// loader read: config.json (LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM as the geometry says),
// generation_config.json, sharded safetensors (model-0000i-of-0000N.safetensors) with
// model.safetensors.index.json (weight_map, metadata.total_size = bytes of all tensors), and the byte-level
// BPE tokenizer of synthetic_tokenizer.hpp.
//
// Weights (the scales keep activations sane through any depth; all random draws are N(0, sigma^2)):
//   linear [d_out, d_in]     sigma = 1 / sqrt(d_in): a unit-RMS input gives unit-RMS outputs
//   embed_tokens [V, d]      sigma = 1 / sqrt(d): rows of norm ~1, small next to the blocks' outputs
//   lm_head [V, d]           sigma = 1 / sqrt(d): the final RMSNorm gives a unit-RMS state, so the
//                            logits are ~N(0, 1) (tied models use embed_tokens, the same scale)
//   RMSNorm weights          exactly 1;   q/k/v biases (attention_bias, Qwen2)   exactly 0
// Every block sees an RMSNorm'd input, so each adds O(1) per element to the residual stream (RMS grows
// like sqrt(layers)), attention scores q.k / sqrt(head_dim) have unit variance, and the logits stay ~N(0, 1)
// at any depth: finite, and neither flat nor one-hot.
//
// Determinism: tensor T's elements come in chunks of synthetic_chunk_elements; chunk c is drawn from
// random_stream::derive(seed, {stream_id("lorafleet.synth-model"), stream_id(T's name), c}), in double,
// rounded to float, then to the dtype (round to nearest even). So the files are byte-identical for a seed
// whatever the thread count, the shard size (which only regroups tensors) or the depth cut (layer l's
// tensors do not depend on how many layers are written).
//
// Memory is bounded: tensors are streamed to disk chunk by chunk (threads x one chunk in flight), never a
// whole tensor or shard. Atomicity: everything is written into a staging folder beside `out_dir`
// (io::make_staging_dir, each file itself written atomically) that is swapped into place at the end
// (io::swap_dir_into_place): `out_dir` holds the old folder or the complete new one, never a partial one;
// on any failure the staging folder is removed.
#pragma once

#include "engine/io/hf_config.hpp"
#include "engine/io/safetensors.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace lorafleet::synth {

inline constexpr std::int64_t synthetic_chunk_elements = std::int64_t(1) << 20;
inline constexpr std::uint64_t default_shard_bytes = std::uint64_t(2) << 30; // 2 GiB

struct synth_model_options {
    std::filesystem::path out_dir;
    io::model_geometry geometry;       // a preset or a config.json (io::resolve_geometry)
    io::dtype dtype = io::dtype::BF16; // F32, F16 or BF16
    std::uint64_t seed = 0;
    int layers = 0;                                  // write layers 0..layers-1 only (config says so); 0: all
    std::uint64_t shard_bytes = default_shard_bytes; // tensor bytes per shard at most (a larger tensor
                                                     // gets a shard of its own); >= 1
    bool force = false; // replace an existing non-empty out_dir, which must then be a model folder
    int threads = 0;    // generator threads; 0: min(4, hardware threads)
};

// One tensor of the folder, as planned.
struct synth_model_tensor {
    std::string name;                // "model.layers.0.self_attn.q_proj.weight"
    std::vector<std::int64_t> shape; // [d_out, d_in] or [d]
    double sigma = 0.0;              // standard deviation of the draws
    double constant = 0.0;           // the value of every element when sigma == 0 (norms: 1, biases: 0)
    int shard = 0;                   // 0-based shard index
    std::uint64_t bytes = 0;         // numel * dtype size
};

struct synth_model_plan {
    io::model_geometry geometry;             // as written (num_layers cut by `layers`)
    std::vector<synth_model_tensor> tensors; // in model order (embed, layers, norm, lm_head)
    int shards = 0;
    std::uint64_t tensor_bytes = 0; // sum of tensor bytes (the index's metadata.total_size)
};

// Throws usage_error naming the option: dtype not F32/F16/BF16, layers outside 0..num_layers, shard_bytes
// 0, threads < 0, rope_scaling in the geometry (the engine does not implement it), or a vocabulary the
// synthetic tokenizer cannot fill (see synthetic_special_ids).
void validate_synth_model_options(const synth_model_options& options);

// Tensors, shapes, scales and shard assignment, without writing anything (validates first).
synth_model_plan plan_synthetic_model(const synth_model_options& options);

// Shard file name: "model-00002-of-00005.safetensors" (1-based, five digits as transformers writes).
std::string shard_file_name(int shard, int shards);

// The config.json text written for `geometry` (its num_layers is what the file says).
std::string synthetic_config_json(const io::model_geometry& geometry, io::dtype dtype, std::uint64_t seed);

struct synth_model_result {
    synth_model_plan plan;
    std::uint64_t bytes = 0; // every file written (shards with headers, JSON, tokenizer)
};

// Called on the caller's thread with (tensor bytes written, plan.tensor_bytes) after every batch of
// chunks and once at the end; return false to cancel.
using synth_model_progress = std::function<bool(std::uint64_t done, std::uint64_t total)>;

// Writes the folder. Throws usage_error for bad options or an existing non-empty out_dir without `force`
// (or with `force`, one that is not a model folder: no config.json), io_error when the file system refuses
// (including up front when it has less free space than the folder needs, with both numbers), and
// cancelled_error when `progress` returns false. After any throw out_dir is as it was.
synth_model_result write_synthetic_model(const synth_model_options& options,
                                         const synth_model_progress& progress = {});

} // namespace lorafleet::synth
