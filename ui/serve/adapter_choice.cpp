// Choosing the served adapters (see adapter_choice.hpp).
#include "ui/serve/adapter_choice.hpp"

#include <QSet>

#include <algorithm>
#include <unordered_map>

namespace lorafleet::ui {

namespace {

bool keeps(const AdapterChoice& choice, const QString& name, int cluster, const QSet<QString>& selected) {
    switch (choice.subset) {
    case AdapterChoice::Subset::All:
        return true;
    case AdapterChoice::Subset::Selection:
        return selected.contains(name);
    case AdapterChoice::Subset::Cluster:
        return cluster >= 0 && cluster == choice.cluster;
    }
    return false;
}

} // namespace

QStringList chooseFromBank(const bank::compressed_bank& bank, const AdapterChoice& choice) {
    const QSet<QString> selected(choice.selection.begin(), choice.selection.end());
    QStringList names;
    for (const auto& a : bank.adapters) {
        const QString name = QString::fromStdString(a.name);
        if (keeps(choice, name, a.cluster, selected)) names << name;
    }
    return names;
}

std::shared_ptr<const bank::compressed_bank> bankSubset(const bank::compressed_bank& bank,
                                                        const QStringList& names) {
    const QSet<QString> wanted(names.begin(), names.end());
    std::vector<std::size_t> kept;
    for (std::size_t i = 0; i < bank.adapters.size(); ++i)
        if (wanted.contains(QString::fromStdString(bank.adapters[i].name))) kept.push_back(i);
    auto out = std::make_shared<bank::compressed_bank>();
    out->kind = bank.kind;
    out->rank = bank.rank;
    out->clusters = bank.clusters;
    out->base = bank.base;
    out->parameters = bank.parameters;
    out->modules = bank.modules;
    out->bases = bank.bases;
    const auto core = std::size_t(bank.core_size());
    out->cores.resize(bank.cores.size());
    for (std::size_t m = 0; m < bank.cores.size(); ++m) {
        out->cores[m].reserve(kept.size() * core);
        for (std::size_t i : kept)
            out->cores[m].insert(out->cores[m].end(), bank.core(m, i), bank.core(m, i) + core);
    }
    for (std::size_t i : kept)
        out->adapters.push_back(bank.adapters[i]);
    return out;
}

QStringList chooseFolders(const std::vector<FleetEntry>& fleet, const AdapterChoice& choice,
                          const bank::compressed_bank* bank) {
    std::unordered_map<std::string, int> clusterOf;
    if (bank)
        for (const auto& a : bank->adapters)
            clusterOf[a.name] = a.cluster;
    const QSet<QString> selected(choice.selection.begin(), choice.selection.end());
    QStringList folders;
    for (const FleetEntry& e : fleet) {
        const auto it = clusterOf.find(e.adapter->name);
        const int cluster = it == clusterOf.end() ? -1 : it->second;
        if (keeps(choice, QString::fromStdString(e.adapter->name), cluster, selected))
            folders << e.summary.dir;
    }
    return folders;
}

std::vector<int> clusterSizes(const bank::compressed_bank& bank) {
    std::vector<int> sizes(std::size_t(std::max(0, bank.clusters)), 0);
    for (const auto& a : bank.adapters)
        if (a.cluster >= 0 && std::size_t(a.cluster) < sizes.size()) ++sizes[std::size_t(a.cluster)];
    return sizes;
}

} // namespace lorafleet::ui
