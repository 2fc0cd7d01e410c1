// The Quality tab's engine work: see quality_work.hpp.
#include "ui/quality/quality_work.hpp"

#include "engine/bank/bank_format.hpp"
#include "engine/core/error.hpp"
#include "engine/quality/bank_evaluation.hpp"
#include "engine/quality/prompt_set.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "engine/serve/tokenizer/tokenizer.hpp"

#include <algorithm>
#include <set>

namespace lorafleet::ui {

namespace fs = std::filesystem;

std::shared_ptr<const bank::compressed_bank>
evaluateAndStore(const QualityEvaluationRequest& request, std::shared_ptr<const bank::compressed_bank> bank,
                 const std::function<bool(int done, int total)>& progress) {
    if (!bank) throw usage_error("evaluate", "there is no compressed bank yet: compress the fleet first");
    if (request.bankDir.isEmpty())
        throw usage_error("evaluate", "the bank is not saved yet: save the workspace first (the results are "
                                      "stored in its bank folder)");
    if (request.modelDir.trimmed().isEmpty()) throw usage_error("evaluate", "choose a model folder");
    if (request.promptsFile.isEmpty())
        throw usage_error("evaluate", "no prompts file (the bundled sonnets "
                                      "were not found)");
    if (request.promptCount < 1 || request.maxTokens < 1)
        throw usage_error("evaluate", "the prompt count and max tokens must be at least 1");
    const fs::path bankDir = request.bankDir.toStdString();
    const fs::path modelDir = request.modelDir.trimmed().toStdString();
    const auto weights = serve::model_weights::load(modelDir);
    const auto tokenizer = serve::load_tokenizer(modelDir);
    if (request.maxTokens >= weights->max_context())
        throw usage_error("evaluate", "max tokens must be below the model's context of " +
                                          std::to_string(weights->max_context()));
    const auto prompts =
        quality::read_prompt_set(request.promptsFile.toStdString(), request.promptCount, *tokenizer);

    quality::bank_evaluation_options options;
    options.threads = request.threads;
    options.agreement.max_tokens = request.maxTokens;
    options.agreement.eos = tokenizer->eos_ids();
    options.agreement.vocab_limit = std::min(weights->geometry().vocab_size, tokenizer->vocab_size());
    options.agreement.progress = progress;
    // Only the raw folders of adapters the bank holds (a fleet adapter added after compression is not
    // evaluated, and its folder must not clash with anything).
    std::set<std::string> names;
    for (const auto& a : bank->adapters)
        names.insert(a.name);
    for (const QString& folder : request.rawFolders) {
        const fs::path dir = folder.toStdString();
        if (names.count(dir.lexically_normal().filename().string())) options.raw_paths.push_back(dir);
    }
    const auto eval = quality::evaluate_bank(bankDir, weights, prompts, options);
    // A cancel that came during the last group must not store anything.
    const int done = int(eval.results.size());
    if (progress && !progress(done, done)) throw cancelled_error("evaluate", "cancelled");

    const auto stored = bank::read_bank(bankDir, {false, false, std::nullopt, false}).quality;
    bank::bank_manifest_update update;
    update.quality = quality::merge_quality(stored, eval.section);
    bank::update_bank_manifest(bankDir, update);
    auto updated = std::make_shared<bank::compressed_bank>(*bank);
    updated->quality = update.quality;
    return updated;
}

std::shared_ptr<const bank::compressed_bank>
storeRawAdapters(const QString& bankDir, std::shared_ptr<const bank::compressed_bank> bank,
                 const QStringList& rawAdapters) {
    if (!bank) throw usage_error("serve raw", "there is no compressed bank");
    if (bankDir.isEmpty())
        throw usage_error("serve raw", "the bank is not saved yet: save the workspace first");
    std::vector<std::string> names;
    for (const QString& n : rawAdapters)
        names.push_back(n.toStdString());
    std::sort(names.begin(), names.end());
    names.erase(std::unique(names.begin(), names.end()), names.end());
    bank::bank_manifest_update update;
    update.raw_adapters = names;
    bank::update_bank_manifest(bankDir.toStdString(), update);
    auto updated = std::make_shared<bank::compressed_bank>(*bank);
    updated->raw_adapters = names;
    return updated;
}

} // namespace lorafleet::ui
