// The serving-session setup (see serving_session.hpp): model, adapters, engine, in that order, each stage
// announced through on_stage so that a caller can report progress or cancel between stages.
#include "engine/serve/session/serving_session.hpp"

#include "engine/core/error.hpp"

#include <cstddef>

namespace lorafleet::serve {

served_model load_served_model(const std::filesystem::path& model_dir, const model_load_options& options) {
    served_model m;
    m.weights = model_weights::load(model_dir, options);
    m.tokenizer = load_tokenizer(model_dir);
    const auto clean = model_dir.lexically_normal(); // "models/x/" names "x"
    m.name = (clean.has_filename() ? clean.filename() : clean.parent_path().filename()).string();
    return m;
}

namespace {

// Raw folders with none usable: one error naming how many were tried and the first reasons.
[[noreturn]] void fail_none_usable(const std::vector<skipped_adapter>& skipped) {
    std::string text = "none of the adapters could be loaded (" + std::to_string(skipped.size()) + " skipped";
    for (std::size_t i = 0; i < skipped.size() && i < 3; ++i)
        text += (i ? "; " : ": ") + describe(skipped[i]);
    if (skipped.size() > 3) text += "; ...";
    throw validation_error("adapters", text + ")");
}

} // namespace

opened_adapters open_adapters(const adapter_options& options, const io::model_geometry& base) {
    opened_adapters out;
    switch (options.source) {
    case adapter_source::base_only:
        break;
    case adapter_source::bank_folder:
        if (options.bank_dir.empty()) throw usage_error("serve", "no bank folder given");
        out.provider = open_bank_provider(options.bank_dir, base);
        break;
    case adapter_source::bank_in_memory:
        if (!options.bank) throw usage_error("serve", "there is no compressed bank");
        out.provider = open_bank_provider(*options.bank, base, options.bank_label);
        break;
    case adapter_source::raw_folders:
        if (options.raw_paths.empty()) throw usage_error("serve", "no adapter folder given");
        out.provider = open_raw_provider(options.raw_paths, base, options.raw_cache_bytes,
                                         options.skip_unusable ? &out.skipped : nullptr);
        if (out.provider->list().empty()) fail_none_usable(out.skipped);
        break;
    }
    return out;
}

std::unique_ptr<serving_engine> start_engine(const served_model& model,
                                             std::unique_ptr<AdapterProvider> provider,
                                             const engine_options& options) {
    return std::make_unique<serving_engine>(model.weights, model.tokenizer, std::move(provider), options);
}

serving_session open_serving_session(const session_options& options) {
    auto stage = [&](std::string_view label) {
        if (options.on_stage) options.on_stage(label);
    };
    serving_session s;
    stage("Loading the model");
    s.model = load_served_model(options.model_dir, options.load);
    stage("Loading the adapters");
    opened_adapters adapters = open_adapters(options.adapters, s.model.weights->geometry());
    s.skipped = std::move(adapters.skipped);
    stage("Starting the engine");
    s.engine = start_engine(s.model, std::move(adapters.provider), options.engine);
    return s;
}

} // namespace lorafleet::serve
