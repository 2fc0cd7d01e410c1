// ImportJob (see import_job.hpp). Reasons are made short: the engine's "path: what" messages have the
// adapter folder replaced by the file name inside it, since the problem list shows the folder already.
#include "ui/fleet/import_job.hpp"

#include "engine/core/error.hpp"
#include "engine/io/adapter_discovery.hpp"
#include "engine/io/peft_adapter.hpp"
#include "ui/common/engine_job.hpp"
#include "ui/common/text_format.hpp"

#include <QDir>
#include <QFileInfo>

#include <filesystem>

namespace lorafleet::ui {

namespace {

namespace fs = std::filesystem;

fs::path toPath(const QString& s) {
    return fs::path(s.toStdString());
}

QString fromPath(const fs::path& p) {
    return QString::fromStdString(p.string());
}

// "<dir>/adapter_model.safetensors: bad header" -> "adapter_model.safetensors: bad header".
QString reasonFor(const lorafleet::error& e, const QString& dir) {
    const QString text = QString::fromStdString(e.what());
    const QString where = QString::fromStdString(e.where());
    if (where.isEmpty() || !text.startsWith(where + QLatin1String(": "))) return oneLine(text);
    const QString rest = text.mid(where.size() + 2);
    const QString cleanWhere = ImportJob::cleanDir(where);
    if (cleanWhere == dir) return oneLine(rest);
    if (cleanWhere.startsWith(dir + QLatin1Char('/')))
        return oneLine(cleanWhere.mid(dir.size() + 1) + QLatin1String(": ") + rest);
    return oneLine(text);
}

} // namespace

ImportJob::ImportJob(QStringList paths, std::unordered_set<std::string> knownKeys,
                     std::optional<io::model_geometry> base, std::unordered_set<std::string> knownNames,
                     DuplicateNames policy)
    : m_paths(std::move(paths)), m_seen(std::move(knownKeys)), m_names(std::move(knownNames)),
      m_policy(policy), m_base(std::move(base)) {}

QString ImportJob::cleanDir(const QString& dir) {
    return QDir::cleanPath(QFileInfo(dir).absoluteFilePath());
}

QString ImportJob::keyOf(const QString& dir) {
    std::error_code ec;
    const fs::path canonical = fs::canonical(toPath(dir), ec);
    return ec ? cleanDir(dir) : fromPath(canonical);
}

void ImportJob::run(JobContext& context) {
    // 1. Search every root; a root that fails (missing, no adapters inside) is a problem of its own.
    context.setStage(QStringLiteral("Searching folders"));
    context.setProgress(0, 0);
    QStringList dirs;
    for (const QString& root : m_paths) {
        context.throwIfCancelled();
        try {
            for (const auto& d : io::find_adapter_dirs(toPath(root)))
                dirs << cleanDir(fromPath(d));
        } catch (const lorafleet::error& e) {
            m_problems.push({cleanDir(root), oneLine(QString::fromStdString(e.what()))});
        }
    }
    m_found.store(int(dirs.size()));

    // 2. Load each new folder.
    context.setStage(QStringLiteral("Loading adapters"));
    io::peft_load_options options;
    options.base = m_base ? &*m_base : nullptr;
    const qint64 total = dirs.size();
    context.setProgress(0, total);
    for (qint64 i = 0; i < total; ++i) {
        context.throwIfCancelled();
        const QString& dir = dirs[i];
        const QString key = keyOf(dir);
        if (!m_seen.insert(key.toStdString()).second) {
            m_duplicates.fetch_add(1);
        } else {
            try {
                auto adapter =
                    std::make_shared<io::peft_adapter>(io::load_peft_adapter(toPath(dir), options));
                if (m_names.count(adapter->name)) {
                    const QString name = QString::fromStdString(adapter->name);
                    if (m_policy != DuplicateNames::Rename) {
                        m_clashes.push({dir, name, {}});
                        context.setProgress(i + 1, total);
                        continue;
                    }
                    int k = 2;
                    while (m_names.count(adapter->name + "-" + std::to_string(k)))
                        ++k;
                    adapter->name += "-" + std::to_string(k);
                    m_clashes.push({dir, name, QString::fromStdString(adapter->name)});
                }
                m_names.insert(adapter->name);
                FleetEntry entry;
                entry.summary = summarizeAdapter(*adapter, dir, key);
                entry.adapter = std::move(adapter);
                m_loaded.push(std::move(entry));
            } catch (const cancelled_error&) {
                throw;
            } catch (const lorafleet::error& e) {
                m_problems.push({dir, reasonFor(e, dir)});
            } catch (const std::exception& e) { // std::bad_alloc, filesystem_error, ...
                m_problems.push({dir, oneLine(QString::fromStdString(e.what()))});
            }
        }
        context.setProgress(i + 1, total);
    }
}

} // namespace lorafleet::ui
