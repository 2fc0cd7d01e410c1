// Bundled serve resources (see serve_resources.hpp).
#include "ui/serve/serve_resources.hpp"

#include "engine/core/error.hpp"
#include "engine/io/bundled_resources.hpp"

#include <QFile>
#include <QFileInfo>
#include <QTextStream>

namespace lorafleet::ui {

// The lookup itself is engine/io/bundled_resources.hpp (shared with the CLI).
QString bundledResourcesDir() {
    const auto r = io::find_resource(std::filesystem::path(io::demo_model_relative) / "config.json");
    if (r.path) return QString::fromStdString(r.path->parent_path().parent_path().parent_path().string());
    const auto p = io::find_resource(io::sonnets_relative);
    return p.path ? QString::fromStdString(p.path->parent_path().parent_path().string()) : QString();
}

QString demoModelDir() {
    const auto dir = io::find_demo_model();
    return dir ? QString::fromStdString(dir->string()) : QString();
}

QString demoModelMissingReason() {
    const std::filesystem::path relative = std::filesystem::path(io::demo_model_relative) / "config.json";
    const auto r = io::find_resource(relative);
    if (r.path) return {};
    return QString::fromStdString(io::not_found_message("The demo model", relative, r));
}

QString sonnetsPath() {
    const auto r = io::find_resource(io::sonnets_relative);
    return r.path ? QString::fromStdString(r.path->string()) : QString();
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
