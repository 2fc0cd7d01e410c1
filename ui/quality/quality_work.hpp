// The Quality tab's engine work (issue 18), run inside EngineJobs (never on the GUI thread): evaluating the
// workspace's bank against its raw adapters and storing the result in the bank folder's manifest, as
// `lorafleet-cli evaluate` does (quality::evaluate_bank, merge_quality, bank::update_bank_manifest); and
// rewriting the bank's list of adapters served raw (format 2, hybrid serving). Each returns the bank the
// console should hold from now on: a copy of the given one with the new quality section / raw list, so
// the views and the Serve tab (which serves an in-memory bank through a hybrid provider) agree with the
// folder without re-reading it.
// Threading: any thread; `bank` is immutable and shared; the bank folder must not be written by anyone else
// meanwhile.
#pragma once

#include "engine/bank/compressed_bank.hpp"

#include <QString>
#include <QStringList>

#include <functional>
#include <memory>

namespace lorafleet::ui {

struct QualityEvaluationRequest {
    QString bankDir;        // the bank folder (the workspace's saved bank)
    QString modelDir;       // the base model folder (config.json, weights, tokenizer)
    QStringList rawFolders; // the raw PEFT adapter folders (the workspace's adapters); empty: the sources
    QString promptsFile;    // one prompt per non-blank line (the CLI's format)
    int promptCount = 8;    // the first promptCount prompts
    int maxTokens = 16;     // greedy tokens per prompt
    int threads = 0;        // forward-pass threads (0: hardware threads)
};

// Evaluates every adapter of `bank` (stored at request.bankDir), stores the merged quality section in the
// manifest and returns the updated bank. `progress(done, total)` after each group; false cancels
// (lorafleet::cancelled_error; it is asked once more before anything is stored, so a cancelled evaluation
// leaves the bank folder as it was). Throws usage_error / io_error / validation_error with a one-line reason
// (no model folder, no prompts, an adapter without a raw folder, ...).
std::shared_ptr<const bank::compressed_bank>
evaluateAndStore(const QualityEvaluationRequest& request, std::shared_ptr<const bank::compressed_bank> bank,
                 const std::function<bool(int done, int total)>& progress);

// Rewrites the manifest of the bank at `bankDir` so that exactly `rawAdapters` are served raw (format 2
// when any, 1 when none; atomic) and returns a copy of `bank` with that list. usage_error for a name the
// bank lacks.
std::shared_ptr<const bank::compressed_bank>
storeRawAdapters(const QString& bankDir, std::shared_ptr<const bank::compressed_bank> bank,
                 const QStringList& rawAdapters);

} // namespace lorafleet::ui
