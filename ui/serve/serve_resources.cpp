// Bundled serve resources (see serve_resources.hpp).
#include "ui/serve/serve_resources.hpp"

#include "engine/core/error.hpp"

#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QTextStream>

namespace lorafleet::ui {

namespace {

bool holdsResources(const QString& dir) {
    return QFileInfo::exists(dir + QStringLiteral("/models/tinystories-656k/config.json")) ||
           QFileInfo::exists(dir + QStringLiteral("/prompts/sonnets.txt"));
}

} // namespace

QString bundledResourcesDir() {
    const QString env = qEnvironmentVariable("LORAFLEET_RESOURCES");
    if (!env.isEmpty() && holdsResources(env)) return QDir(env).absolutePath();
    QString exeDir = QCoreApplication::instance() ? QCoreApplication::applicationDirPath() : QString();
    if (exeDir.isEmpty()) exeDir = QFileInfo(QStringLiteral("/proc/self/exe")).canonicalFilePath();
    if (exeDir.isEmpty()) return {};
    const QString installed = QDir(exeDir).absoluteFilePath(QStringLiteral("../share/lorafleet"));
    if (holdsResources(installed)) return QDir(installed).absolutePath();
    QDir dir(exeDir);
    for (int up = 0; up < 8; ++up) {
        const QString candidate = dir.absoluteFilePath(QStringLiteral("resources"));
        if (holdsResources(candidate)) return QDir(candidate).absolutePath();
        if (!dir.cdUp()) break;
    }
    return {};
}

QString demoModelDir() {
    const QString root = bundledResourcesDir();
    const QString dir = root + QStringLiteral("/models/tinystories-656k");
    return !root.isEmpty() && QFileInfo::exists(dir + QStringLiteral("/config.json")) ? dir : QString();
}

QString sonnetsPath() {
    const QString root = bundledResourcesDir();
    const QString file = root + QStringLiteral("/prompts/sonnets.txt");
    return !root.isEmpty() && QFileInfo::exists(file) ? file : QString();
}

QStringList readPromptFile(const QString& path) {
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly | QIODevice::Text))
        throw io_error(path.toStdString(), "cannot open the prompts file");
    QTextStream in(&file);
    QStringList out;
    QString current;
    while (!in.atEnd()) {
        const QString line = in.readLine();
        if (line.trimmed().isEmpty()) {
            if (!current.isEmpty()) out << current;
            current.clear();
            continue;
        }
        current += current.isEmpty() ? line : QStringLiteral("\n") + line;
    }
    if (!current.isEmpty()) out << current;
    if (out.isEmpty()) throw validation_error(path.toStdString(), "the prompts file holds no text");
    return out;
}

} // namespace lorafleet::ui
