// The one way a front end sets up serving: the base model's weights and tokenizer, the adapters a request
// may name (a compressed bank folder, a bank already in memory, raw PEFT folders, or none) behind an
// AdapterProvider, and a serving_engine over them (CPU or device, engine_options::device). Used by
// `lorafleet-cli serve`, `generate` and `bench-serve` and by the console's ServeController, so that all of
// them load, validate, name and skip adapters the same way.
//
// Three stages, usable alone (bench-serve loads the model once and opens a provider per mode; generate's
// CPU path needs no engine) or together (open_serving_session):
//   load_served_model  -> served_model   (weights + tokenizer, shared read-only by every engine on them)
//   open_adapters      -> opened_adapters (the provider, and the adapters that were skipped, with reasons)
//   start_engine       -> serving_engine (takes the provider; starts the engine thread)
//
// Skipping (raw folders): an adapter folder that cannot be read or does not fit the base (io_error,
// format_error, validation_error, shape_mismatch, unsupported_error — any lorafleet::error), a given path
// that does not exist or holds no adapter, and a second adapter with a name already taken (adapters are
// named by folder; the first usable one is kept) are each SKIPPED and listed in `skipped` (name, folder, the
// error's one-line message) instead of failing the setup, when adapter_options::skip_unusable is set (the
// default). The setup fails (validation_error listing the first reasons) only when adapters were asked
// for and none is usable. With skip_unusable false the first such error is thrown as it is. A bank is one
// file set checked as a whole: an unreadable or foreign bank always fails.
//
// Identity: an adapter is named by its `name` (the PEFT folder name, or the bank's adapter name), unique in
// a provider and an engine; requests, the HTTP API and the console use only names. A "slot" is the
// engine's internal index of a loaded adapter (adapter_info::slot) and never leaves the engine.
//
// Ownership: served_model holds the weights and tokenizer by shared_ptr (several engines may share them);
// opened_adapters owns the provider until start_engine (or the caller) takes it; serving_session owns its
// engine (unique_ptr): destroying the session shuts the engine down (serving_engine's destructor cancels
// what is in flight). Any HTTP server or load generator on the engine must be destroyed first.
//
// Thread affinity: every function here runs on the calling thread and may take seconds (file reads,
// mmaps, a bank's checksums); call it off a GUI thread. on_stage runs on that same thread, before each
// stage, and may throw (e.g. cancelled_error) to abandon the setup; nothing half-built is left behind.
// The engine returned is thread-safe (serving_engine.hpp).
//
// Streaming one completion in-process (the console's playground; no HTTP): through the same engine the
// server uses,
//     serve::completion_request req;
//     req.adapter = name;                          // "" for the base model
//     req.prompt = session.engine->tokenizer().encode(text, true);  // BOS as the tokenizer says
//     req.params.max_tokens = n;  req.params.sampling.temperature = t;  // 0 = greedy
//     req.on_text = [](std::string_view piece) { ... };  // engine thread: queue it, do not block
//     req.on_done = [](const serve::completion_result& r) { ... };   // exactly once, engine thread
//     const auto id = session.engine->submit(std::move(req));        // usage_error: nothing queued
//     session.engine->cancel(id);                  // optional; on_done then reports cancelled
// The pieces concatenated equal the final text (valid UTF-8); the result carries token counts and
// timings (ttft_s, total_s) for tokens/s. Raw, compressed and base outputs side by side: one served_model,
// two providers (open_adapters with raw_folders and with a bank), two start_engine calls on it, and the
// base model through either engine with req.adapter = "".
#pragma once

#include "engine/bank/compressed_bank.hpp"
#include "engine/io/hf_config.hpp"
#include "engine/serve/adapters/adapter_provider.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/scheduling/serving_engine.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::serve {

// ---- stage 1: the base model ------------------------------------------------------------------------------
struct served_model {
    std::shared_ptr<const model_weights> weights;
    std::shared_ptr<const Tokenizer> tokenizer;
    std::string name; // the model folder's name (the HTTP server's default base name)
};

// Reads config.json, the weights (in their stored dtype unless `options` asks for another) and the
// tokenizer of a HuggingFace model folder. io_error / format_error / unsupported_error as
// model_weights::load and load_tokenizer throw them.
served_model load_served_model(const std::filesystem::path& model_dir,
                               const model_load_options& options = {});

// ---- stage 2: the adapters --------------------------------------------------------------------------------
enum class adapter_source {
    base_only,      // no provider: only the base model is served
    bank_folder,    // a compressed bank folder (bank_format.hpp), read and checked against the base
    bank_in_memory, // a bank already read (the console's workspace); copied into the provider
    raw_folders,    // PEFT adapter folders, or folders of them, behind the byte-bounded LRU cache
};

struct adapter_options {
    adapter_source source = adapter_source::base_only;
    std::filesystem::path bank_dir;                    // bank_folder
    std::shared_ptr<const bank::compressed_bank> bank; // bank_in_memory (not null)
    std::string bank_label = "the bank";               // bank_in_memory: how errors name it
    std::vector<std::filesystem::path> raw_paths;      // raw_folders: not empty
    std::uint64_t raw_cache_bytes = 1024ull << 20;     // raw_folders: float32 A/B resident at most
    bool skip_unusable = true;                         // raw_folders: skip and list, or throw (header)
};

struct opened_adapters {
    std::unique_ptr<AdapterProvider> provider; // null for base_only
    std::vector<skipped_adapter> skipped;      // raw_folders with skip_unusable only (adapter_providers.hpp)
};

// Opens the adapters for a base of geometry `base`. usage_error for a missing bank / empty path list;
// the bank's errors (io_error, format_error, shape_mismatch, ...) as they are; raw folders as the header
// says.
opened_adapters open_adapters(const adapter_options& options, const io::model_geometry& base);

// ---- stage 3: the engine ----------------------------------------------------------------------------------
// Starts a serving_engine over `model` and `provider` (may be null). backend_unavailable /
// unsupported_error when options.device is cuda and the device or the adapters cannot serve there.
std::unique_ptr<serving_engine> start_engine(const served_model& model,
                                             std::unique_ptr<AdapterProvider> provider,
                                             const engine_options& options);

// ---- all three
// ----------------------------------------------------------------------------------------------
struct session_options {
    std::filesystem::path model_dir;
    model_load_options load; // the weights' dtype (default: as stored)
    adapter_options adapters;
    engine_options engine;
    // Called on the calling thread before each stage with a short label ("Loading the model", "Loading the
    // adapters", "Starting the engine"); may throw to abandon the setup. May be empty.
    std::function<void(std::string_view stage)> on_stage;
};

// What a front end gets back: the model, the running engine, and what was skipped. What was loaded is
// the engine's: engine->adapters() (names, clusters, errors), adapter_mode() ("compressed", "raw",
// "base"), device_note().
struct serving_session {
    served_model model;
    std::vector<skipped_adapter> skipped;
    std::unique_ptr<serving_engine> engine; // not null
};

serving_session open_serving_session(const session_options& options);

} // namespace lorafleet::serve
