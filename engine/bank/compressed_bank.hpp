// The compressed bank: a fleet of LoRA adapters after joint compression (method.md §3-§5), in memory.
// Per module m and cluster c a shared basis U [d_out, r] and Vᵀ [r, d_in]; per adapter i and module m a
// core Σ [r, r] (JD-Full) or diag(σ) [r] (JD-Diag), with the adapter's LoRA scale folded in, so that
//     ΔW_i(m) ≈ U_{c(i)}(m) · Σ_i(m) · V_{c(i)}(m)ᵀ.
// Invariants (checked by validate()): every adapter has a cluster in [0, clusters); a module an adapter
// lacks has a zero core and a NaN error; a cluster none of whose members has module m has an empty
// basis there (a member may still list the module with error 1: nothing of it is represented).
// All matrices are float32, row-major. On disk: see bank_format.hpp.
#pragma once

#include "engine/compress/jd_method.hpp"
#include "engine/io/hf_config.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lorafleet::bank {

struct bank_module {
    std::string path; // "model.layers.0.self_attn.q_proj"
    int layer = -1;
    std::string short_name; // "q_proj"
    std::int64_t d_out = 0;
    std::int64_t d_in = 0;
};

struct bank_adapter {
    std::string name;       // the source folder's name; unique in a bank
    std::string source;     // the folder it was compressed from (informational)
    std::string base_model; // base_model_name_or_path of the source config
    int cluster = 0;
    int source_rank = 0;        // max r of the source adapter
    std::vector<double> errors; // [modules]: squared relative Frobenius error, NaN where absent
    double mean_error() const;  // mean over the modules the adapter has (0 when it has none)
    bool has_module(std::size_t m) const;
};

struct cluster_basis {
    std::vector<float> u;  // [d_out, r]
    std::vector<float> vt; // [r, d_in]
    bool empty() const { return u.empty(); }
};

// How closely an adapter's compressed form reproduces its raw original's greedy outputs (measured by
// engine/quality/agreement.hpp, `lorafleet-cli evaluate`): over `prompts` prompts the raw adapter
// generated `tokens` tokens in all (a final EOS included); the compressed adapter, teacher-forced on them,
// picked the same argmax at `agreeing_tokens` positions and the whole sequence for `exact_matches` prompts.
struct adapter_quality {
    int prompts = 0;
    int tokens = 0;
    int exact_matches = 0;
    int agreeing_tokens = 0;
    int first_divergence = -1;        // earliest position (any prompt) where the argmax differs; -1: none
    double mean_first_divergence = 0; // mean over prompts; a prompt that matches counts its length
    double mean_kl = 0;               // mean over positions of KL(raw || compressed), nats
    double exact_match() const { return prompts > 0 ? double(exact_matches) / prompts : 0.0; }
    double token_agreement() const { return tokens > 0 ? double(agreeing_tokens) / tokens : 0.0; }
};

// The manifest's optional "quality" section: one evaluation's settings and its per-adapter results
// (a subset of the bank's adapters; older readers ignore the section).
struct quality_section {
    std::string model;      // name of the base model folder the evaluation ran on
    int prompts = 0;        // prompts per adapter
    int max_tokens = 0;     // greedy tokens per prompt
    std::string prompt_set; // SHA-256 (hex) of the prompts' token ids, to tell evaluations apart
    std::map<std::string, adapter_quality> adapters; // by adapter name
};

struct compressed_bank {
    compress::jd_method kind = compress::jd_method::full; // its names: compress::to_string / parse_jd_method
    int rank = 0;
    int clusters = 1;
    std::optional<io::model_geometry> base;               // when the fleet was checked against a base model
    nlohmann::json parameters = nlohmann::json::object(); // creation parameters (seed, normalize, ...)
    std::vector<bank_module> modules;
    std::vector<bank_adapter> adapters;
    std::vector<std::vector<cluster_basis>> bases; // [modules][clusters]
    std::vector<std::vector<float>> cores;         // [modules] -> [adapters, r, r] or [adapters, r]
    std::optional<quality_section> quality;        // the last evaluation, when one was stored
    // Hybrid serving: adapters served from their original PEFT files (their bank_adapter::source) instead
    // of their cores, beside the compressed ones; names of adapters the bank has, each once. A bank that
    // names any is written as format version 2 (bank_format.hpp); empty in every version-1 bank.
    std::vector<std::string> raw_adapters;

    std::int64_t core_size() const {
        return kind == compress::jd_method::full ? std::int64_t(rank) * rank : rank;
    }
    // Core of adapter i on module m: core_size() floats.
    const float* core(std::size_t m, std::size_t i) const { return cores[m].data() + i * core_size(); }
    float* core(std::size_t m, std::size_t i) { return cores[m].data() + i * core_size(); }
    std::optional<std::size_t> find_adapter(const std::string& name) const;

    // B' = U Σ [d_out, r] for adapter i on module m (the rebuilt PEFT lora_B with scale 1).
    std::vector<float> expand_core(std::size_t m, std::size_t i) const;
    // Dense U Σ Vᵀ [d_out, d_in]: for tests and small tools only, never on a hot path.
    std::vector<float> dense_update(std::size_t m, std::size_t i) const;

    double mean_error() const; // mean over adapters of their mean error
    double max_error() const;
    std::uint64_t stored_parameters() const; // basis + core floats actually held

    void validate(const std::string& where) const; // throws validation_error / shape_mismatch
};

} // namespace lorafleet::bank
