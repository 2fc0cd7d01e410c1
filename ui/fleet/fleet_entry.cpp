// summarizeAdapter: the FleetModel's row data, computed on the import worker (see fleet_entry.hpp).
#include "ui/fleet/fleet_entry.hpp"

#include "ui/common/text_format.hpp"

#include <algorithm>

namespace lorafleet::ui {

QString compactModuleLabel(const QStringList& modules) {
    QStringList compact;
    for (const auto& m : modules)
        compact << (m.endsWith(QLatin1String("_proj")) ? m.chopped(5) : m);
    return compact.join(QLatin1String(", "));
}

AdapterSummary summarizeAdapter(const io::peft_adapter& adapter, const QString& dir, const QString& key) {
    AdapterSummary s;
    s.name = QString::fromStdString(adapter.name);
    s.dir = dir;
    s.key = key;
    bool first = true;
    for (const auto& m : adapter.modules) {
        s.minRank = first ? m.rank : std::min(s.minRank, m.rank);
        s.maxRank = first ? m.rank : std::max(s.maxRank, m.rank);
        s.minAlpha = first ? m.alpha : std::min(s.minAlpha, m.alpha);
        s.maxAlpha = first ? m.alpha : std::max(s.maxAlpha, m.alpha);
        first = false;
    }
    for (const auto& name : adapter.module_names())
        s.modules << QString::fromStdString(name);
    s.modulesLabel = compactModuleLabel(s.modules);
    s.moduleCount = int(adapter.modules.size());
    s.layers = adapter.layer_count();
    s.parameters = adapter.parameter_count();
    s.weightBytes = adapter.weight_bytes();
    s.fileBytes = adapter.file ? adapter.file->file_bytes() : s.weightBytes;
    if (const auto t = adapter.weight_dtype())
        s.dtype = latin1(io::dtype_name(*t));
    else
        s.dtype = QStringLiteral("mixed");
    for (const auto& w : adapter.warnings)
        s.warnings << QString::fromStdString(w);
    return s;
}

} // namespace lorafleet::ui
