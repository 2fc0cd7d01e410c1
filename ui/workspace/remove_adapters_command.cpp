// RemoveAdaptersCommand (see remove_adapters_command.hpp).
#include "ui/workspace/remove_adapters_command.hpp"

#include "ui/common/text_format.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QHash>
#include <QSet>

#include <algorithm>

namespace lorafleet::ui {

RemoveAdaptersCommand::RemoveAdaptersCommand(Session* session, const QList<int>& storeRows)
    : m_session(session) {
    QList<int> rows = storeRows;
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
    const FleetStore* store = session->store();
    for (int row : rows)
        if (row >= 0 && row < store->size()) m_entries.emplace_back(row, store->entry(row));
    setText(QStringLiteral("Remove %1").arg(plural(count(), "Adapter", "Adapters")));
}

void RemoveAdaptersCommand::redo() {
    FleetStore* store = m_session->store();
    QHash<QString, int> rowOfKey;
    for (int r = 0; r < store->size(); ++r)
        rowOfKey.insert(store->entry(r).summary.key, r);
    QList<int> rows;
    for (const auto& [row, entry] : m_entries) {
        const auto it = rowOfKey.constFind(entry.summary.key);
        if (it != rowOfKey.constEnd()) rows << *it;
    }
    m_dirsBefore = m_session->workspace()->data().adapterDirs;
    m_session->m_opening.tainted = true;
    store->removeRows(rows);
    m_dirsAfter = m_session->workspace()->data().adapterDirs;
    emit m_session->operationFinished(QStringLiteral("Removed %1 (Edit > Undo restores them)")
                                          .arg(plural(rows.size(), "adapter", "adapters")));
    emit m_session->bankStateChanged();
}

void RemoveAdaptersCommand::undo() {
    // An adapter imported meanwhile under a removed one's name keeps it: names stay unique.
    QSet<QString> names;
    for (const auto& e : m_session->store()->entries())
        names.insert(e.summary.name);
    std::vector<std::pair<int, FleetEntry>> back;
    QStringList clashing;
    for (const auto& item : m_entries) {
        if (names.contains(item.second.summary.name))
            clashing << item.second.summary.name;
        else
            back.push_back(item);
    }
    m_session->m_opening.tainted = true;
    m_session->m_restoring = true;
    const int restored = m_session->store()->restore(std::move(back));
    m_session->m_restoring = false;
    Workspace* ws = m_session->workspace();
    const QStringList now = ws->data().adapterDirs;
    if (restored > 0 &&
        QSet<QString>(now.begin(), now.end()) == QSet<QString>(m_dirsBefore.begin(), m_dirsBefore.end()))
        ws->setAdapterDirs(m_dirsBefore); // the same folders, back in their former order
    m_session->applyBankResults();
    QString text = QStringLiteral("Restored %1").arg(plural(restored, "adapter", "adapters"));
    if (!clashing.isEmpty())
        text += QStringLiteral("; not restored, the fleet has an adapter of the same name again: %1")
                    .arg(clashing.join(QLatin1String(", ")));
    emit m_session->operationFinished(text);
    emit m_session->bankStateChanged();
}

} // namespace lorafleet::ui
