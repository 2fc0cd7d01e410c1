// RecentFiles (see recent_files.hpp).
#include "ui/workspace/recent_files.hpp"

#include <QFileInfo>
#include <QSettings>

namespace lorafleet::ui {

namespace {
constexpr auto kKey = "workspace/recent";
}

RecentFiles::RecentFiles(QObject* parent) : QObject(parent) {}

QStringList RecentFiles::files() const {
    QStringList out;
    for (const QString& f : QSettings().value(kKey).toStringList())
        if (QFileInfo::exists(f)) out << f;
    return out;
}

void RecentFiles::add(const QString& path) {
    const QString absolute = QFileInfo(path).absoluteFilePath();
    QStringList list = QSettings().value(kKey).toStringList();
    list.removeAll(absolute);
    list.prepend(absolute);
    store(list.mid(0, kMax));
}

void RecentFiles::remove(const QString& path) {
    QStringList list = QSettings().value(kKey).toStringList();
    if (list.removeAll(QFileInfo(path).absoluteFilePath())) store(list);
}

void RecentFiles::clear() {
    store({});
}

void RecentFiles::store(const QStringList& files) {
    QSettings().setValue(kKey, files);
    emit changed();
}

} // namespace lorafleet::ui
