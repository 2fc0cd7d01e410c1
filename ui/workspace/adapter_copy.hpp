// Copying adapter folders beside a saved workspace (the demo's generated fleet lives in a temporary
// folder removed on exit; saving the demo workspace copies its adapters to NAME.adapters/ first).
// Each folder is copied into a staging sibling and renamed into place, so a destination folder is either
// absent or complete. A destination that already holds the same files (same names and sizes: a copy of
// an earlier, interrupted save) is reused; any other existing destination is an error and nothing is
// replaced. Any thread; only the file system is touched.
#pragma once

#include <QHash>
#include <QString>
#include <QStringList>

#include <optional>

namespace lorafleet::ui {

// Copies each folder of `dirs` (all under `root`) to `target`/<its path relative to `root`>. Returns
// old folder -> new folder (absolute, cleaned), or nullopt with a one-line `error`.
std::optional<QHash<QString, QString>> copyAdapterFolders(const QStringList& dirs, const QString& root,
                                                          const QString& target, QString* error);

} // namespace lorafleet::ui
