// One adapter of the fleet as the console holds it: the loaded engine object (shared, immutable, handed
// as is to the compressor), a summary computed once on the worker that loaded it (the model's rows read
// only this, so sorting 5000 rows touches no weights), and the per-adapter results later stages fill in.
// Also ImportProblem: a folder that could not be imported and why. Plain values, any thread.
#pragma once

#include "engine/io/peft_adapter.hpp"

#include <QString>
#include <QStringList>

#include <cmath>
#include <limits>
#include <memory>

namespace lorafleet::ui {

struct AdapterSummary {
    QString name;    // folder name
    QString dir;     // absolute, cleaned folder path (what a workspace stores)
    QString key;     // canonical path (symlinks resolved): identity for duplicate detection
    int minRank = 0; // over modules; equal to maxRank unless rank_pattern varies it
    int maxRank = 0;
    double minAlpha = 0; // resolved lora_alpha over modules
    double maxAlpha = 0;
    QStringList modules;  // distinct short names in canonical order ("q_proj", ...)
    QString modulesLabel; // compact display form: "q, k, v, o" ("_proj" dropped)
    int moduleCount = 0;  // adapted linear modules (layers x names)
    int layers = 0;
    qint64 parameters = 0;
    quint64 fileBytes = 0;   // adapter_model.safetensors on disk
    quint64 weightBytes = 0; // the LoRA factors only
    QString dtype;           // "BF16", or "mixed"
    QStringList warnings;
};

// "q_proj", "k_proj", "gate_proj" -> "q, k, gate": the table's compact module list.
QString compactModuleLabel(const QStringList& modules);

// Builds the summary of a loaded adapter (reads only metadata, no weights). Any thread.
AdapterSummary summarizeAdapter(const io::peft_adapter& adapter, const QString& dir, const QString& key);

struct FleetEntry {
    std::shared_ptr<const io::peft_adapter> adapter; // never null for an entry of a FleetStore
    AdapterSummary summary;
    quint64 serial = 0; // set by FleetStore::append (never 0 in a store): this import of the adapter
    int cluster = -1;   // -1: not clustered yet
    double error = std::numeric_limits<double>::quiet_NaN(); // relative compression error; NaN: none yet

    bool hasCluster() const { return cluster >= 0; }
    bool hasError() const { return !std::isnan(error); }
};

struct ImportProblem {
    QString path;   // the adapter folder (or the searched root when the search itself failed)
    QString reason; // one line, e.g. "adapter_model.safetensors: header length exceeds the file"
};

} // namespace lorafleet::ui
