// RemoveAdaptersCommand: removing adapters from the fleet as one step of the session's undo stack
// (Edit > Undo / Redo). It keeps the removed entries (the loaded adapters, their summaries and results)
// with the rows they had, so Undo puts exactly those adapters back where they were, with no re-import,
// and the workspace's folder list returns to what it was (a saved workspace is clean again). An adapter
// whose name was imported again meanwhile is not put back (names stay unique; the status line says so).
// Redo removes them again, found by folder key. Thread affinity: GUI thread.
#pragma once

#include "ui/fleet/fleet_entry.hpp"

#include <QStringList>
#include <QUndoCommand>

#include <utility>
#include <vector>

namespace lorafleet::ui {

class Session;

class RemoveAdaptersCommand : public QUndoCommand {
public:
    RemoveAdaptersCommand(Session* session, const QList<int>& storeRows);

    int count() const { return int(m_entries.size()); }
    void redo() override;
    void undo() override;

private:
    Session* m_session;
    std::vector<std::pair<int, FleetEntry>> m_entries; // ascending rows, as before the removal
    QStringList m_dirsBefore;                          // the workspace's folders before the removal
    QStringList m_dirsAfter;                           // and after it
};

} // namespace lorafleet::ui
