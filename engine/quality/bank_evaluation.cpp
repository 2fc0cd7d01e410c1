// evaluate_bank, merge_quality, choose_raw_adapters: see bank_evaluation.hpp.
#include "engine/quality/bank_evaluation.hpp"

#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/serve/adapters/adapter_providers.hpp"
#include "engine/serve/adapters/bank_delta.hpp"
#include "engine/serve/adapters/cached_lora_delta.hpp"

#include <algorithm>
#include <map>

namespace lorafleet::quality {

namespace fs = std::filesystem;

fs::path find_adapter_source(const fs::path& bank_dir, const std::string& name, const std::string& source) {
    std::error_code ec;
    if (source.empty())
        throw io_error(name, "the bank recorded no source folder for this adapter; pass its raw folder");
    const fs::path recorded(source);
    if (fs::is_directory(recorded, ec)) return recorded;
    if (recorded.is_relative()) {
        const fs::path beside = fs::absolute(bank_dir, ec).lexically_normal().parent_path() / recorded;
        if (fs::is_directory(beside, ec)) return beside;
    }
    throw io_error(name, "its source folder " + source +
                             " is gone; pass the raw adapters' folder (--adapters DIR)");
}

bank_evaluation evaluate_bank(const fs::path& bank_dir, std::shared_ptr<const serve::model_weights> weights,
                              std::span<const std::vector<int>> prompts,
                              const bank_evaluation_options& options) {
    bank_evaluation out;
    // The compressed adapters: every adapter of the bank through its cores, also those the bank serves raw.
    auto read = bank::read_bank(bank_dir, {true, true, weights->geometry(), true});
    read.raw_adapters.clear();
    serve::BankDelta compressed(std::move(read), weights->geometry(), bank_dir.string());
    out.adapters = compressed.list();
    std::map<std::string, const serve::adapter_info*> by_name;
    for (const auto& a : out.adapters)
        by_name.emplace(a.name, &a);

    std::vector<std::string> names;
    for (const auto& name : options.adapters) {
        if (!by_name.count(name))
            throw usage_error("evaluate", "the bank has no adapter named '" + name + "'");
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
    if (options.adapters.empty())
        for (const auto& a : out.adapters)
            names.push_back(a.name);

    std::unique_ptr<serve::AdapterProvider> raw;
    if (!options.raw_paths.empty()) {
        raw = serve::open_raw_provider(options.raw_paths, weights->geometry(), options.raw_cache_bytes);
        for (const auto& name : names)
            if (raw->find(name) < 0)
                throw usage_error("evaluate", "no raw adapter named '" + name + "' in the given folders");
    } else {
        auto cached = std::make_unique<serve::CachedLoraDelta>(weights->geometry(), options.raw_cache_bytes);
        for (const auto& name : names)
            cached->add(find_adapter_source(bank_dir, name, by_name.at(name)->source), name);
        raw = std::move(cached);
    }

    auto raw_pass = serve::make_forward_pass(options.device, weights, options.threads, raw.get());
    out.device = std::string(raw_pass.pass->device());
    out.device_note = raw_pass.note;
    // On the CPU one pass serves both providers; a device pass is bound to its provider's device twin.
    serve::forward_pass_choice comp_choice;
    serve::ForwardPass* comp_pass = raw_pass.pass.get();
    if (out.device != "cpu") {
        comp_choice =
            serve::make_forward_pass(serve::device_choice::cuda, weights, options.threads, &compressed);
        comp_pass = comp_choice.pass.get();
    }
    out.results = evaluate_agreement(*raw_pass.pass, *raw, *comp_pass, compressed, names, prompts, *weights,
                                     options.agreement);

    out.section.model = weights->folder().lexically_normal().filename().string();
    if (out.section.model.empty())
        out.section.model = weights->folder().lexically_normal().parent_path().filename().string();
    out.section.prompts = static_cast<int>(prompts.size());
    out.section.max_tokens = options.agreement.max_tokens;
    out.section.prompt_set = prompt_set_digest(prompts, options.agreement.max_tokens);
    for (const auto& r : out.results)
        out.section.adapters[r.name] = r.quality;
    return out;
}

bank::quality_section merge_quality(const std::optional<bank::quality_section>& stored,
                                    const bank::quality_section& fresh) {
    bank::quality_section out = fresh;
    if (stored && stored->model == fresh.model && stored->prompts == fresh.prompts &&
        stored->max_tokens == fresh.max_tokens && stored->prompt_set == fresh.prompt_set) {
        out.adapters = stored->adapters;
        for (const auto& [name, q] : fresh.adapters)
            out.adapters[name] = q;
    }
    return out;
}

std::vector<std::string> choose_raw_adapters(const std::map<std::string, bank::adapter_quality>& quality,
                                             std::optional<double> below_agreement, int keep_raw) {
    std::vector<std::pair<std::string, bank::adapter_quality>> order(quality.begin(), quality.end());
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
        const double ta = a.second.token_agreement(), tb = b.second.token_agreement();
        if (ta != tb) return ta < tb;
        if (a.second.mean_kl != b.second.mean_kl) return a.second.mean_kl > b.second.mean_kl;
        return a.first < b.first;
    });
    std::vector<std::string> out;
    for (std::size_t i = 0; i < order.size(); ++i) {
        const bool worst = int(i) < keep_raw;
        const bool below = below_agreement && order[i].second.token_agreement() < *below_agreement;
        if (worst || below) out.push_back(order[i].first);
    }
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace lorafleet::quality
