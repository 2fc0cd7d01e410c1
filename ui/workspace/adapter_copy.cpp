// copyAdapterFolders (see adapter_copy.hpp).
#include "ui/workspace/adapter_copy.hpp"

#include "ui/common/text_format.hpp"

#include <QDir>

#include <filesystem>
#include <system_error>

namespace lorafleet::ui {

namespace {

namespace fs = std::filesystem;

fs::path toPath(const QString& s) {
    return fs::path(s.toStdString());
}

// Same regular files (relative names and sizes) in both folders.
bool sameFiles(const fs::path& a, const fs::path& b) {
    std::error_code ec;
    std::size_t countA = 0;
    for (const auto& entry : fs::recursive_directory_iterator(a, ec)) {
        if (!entry.is_regular_file(ec)) continue;
        ++countA;
        const fs::path other = b / fs::relative(entry.path(), a, ec);
        if (ec || !fs::is_regular_file(other, ec) || fs::file_size(other, ec) != entry.file_size(ec))
            return false;
    }
    if (ec) return false;
    std::size_t countB = 0;
    for (const auto& entry : fs::recursive_directory_iterator(b, ec))
        if (entry.is_regular_file(ec)) ++countB;
    return !ec && countA == countB;
}

} // namespace

std::optional<QHash<QString, QString>> copyAdapterFolders(const QStringList& dirs, const QString& root,
                                                          const QString& target, QString* error) {
    auto fail = [error](const QString& why) -> std::optional<QHash<QString, QString>> {
        if (error) *error = oneLine(why);
        return std::nullopt;
    };
    const QDir rootDir(root);
    QHash<QString, QString> moved;
    for (const QString& dir : dirs) {
        const QString rel = rootDir.relativeFilePath(dir);
        if (rel.isEmpty() || rel == QLatin1String(".") || rel.startsWith(QLatin1String("..")) ||
            QDir::isAbsolutePath(rel))
            return fail(QStringLiteral("%1 is not inside %2").arg(dir, root));
        const QString destination = QDir::cleanPath(QDir(target).filePath(rel));
        const fs::path dest = toPath(destination);
        std::error_code ec;
        if (fs::exists(dest, ec)) {
            if (!fs::is_directory(dest, ec) || !sameFiles(toPath(dir), dest))
                return fail(QStringLiteral("%1 already exists and is not a copy of %2; not replaced")
                                .arg(destination, dir));
            moved.insert(dir, destination);
            continue;
        }
        const fs::path staged = dest.parent_path() / ("." + dest.filename().string() + ".tmp-copy");
        fs::create_directories(dest.parent_path(), ec);
        if (ec)
            return fail(QStringLiteral("cannot create %1: %2")
                            .arg(QString::fromStdString(dest.parent_path().string()),
                                 QString::fromStdString(ec.message())));
        fs::remove_all(staged, ec); // left by an interrupted save
        fs::copy(toPath(dir), staged, fs::copy_options::recursive, ec);
        if (!ec) fs::rename(staged, dest, ec);
        if (ec) {
            std::error_code ignored;
            fs::remove_all(staged, ignored);
            return fail(QStringLiteral("cannot copy %1 to %2: %3")
                            .arg(dir, destination, QString::fromStdString(ec.message())));
        }
        moved.insert(dir, destination);
    }
    return moved;
}

} // namespace lorafleet::ui
