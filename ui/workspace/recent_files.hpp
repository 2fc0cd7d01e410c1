// RecentFiles: the most recently opened or saved workspaces (newest first, at most kMax, no duplicates),
// persisted in QSettings under "workspace/recent" so every window and the next session share them.
// Thread affinity: GUI thread.
#pragma once

#include <QObject>
#include <QStringList>

namespace lorafleet::ui {

class RecentFiles : public QObject {
    Q_OBJECT
public:
    static constexpr int kMax = 8;

    explicit RecentFiles(QObject* parent = nullptr);

    QStringList files() const; // existing files only
    void add(const QString& path);
    void remove(const QString& path);
    void clear();

signals:
    void changed();

private:
    void store(const QStringList& files);
};

} // namespace lorafleet::ui
