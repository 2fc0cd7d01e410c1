// Workspace: JSON (de)serialization and dirty tracking (see workspace.hpp). File layout, version 1:
//   {"format": "lorafleet-workspace", "version": 1,
//    "base_model": {"preset": "tinystories-656k"} | {"path": "models/x/config.json"} | null,
//    "adapters": ["adapters/a", "/abs/b", ...], "compression": {...}, "bank": "fleet.bank" | null}
#include "ui/workspace/workspace.hpp"

#include "engine/core/error.hpp"
#include "ui/common/text_format.hpp"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QSaveFile>

namespace lorafleet::ui {

namespace {

constexpr auto kFormat = "lorafleet-workspace";

QString absoluteClean(const QString& path, const QDir& base) {
    return QDir::cleanPath(base.absoluteFilePath(path));
}

// Relative to `base` when inside it, else absolute.
QString portable(const QString& path, const QDir& base) {
    const QString rel = base.relativeFilePath(path);
    return rel.startsWith(QLatin1String("..")) || QDir::isAbsolutePath(rel) ? QDir::cleanPath(path) : rel;
}

bool isPreset(const QString& name) {
    return !name.isEmpty() && io::geometry_preset(name.toStdString()).has_value();
}

} // namespace

QString Workspace::fileFilter() {
    return QStringLiteral("LoRA Fleet workspaces (*.lorafleet);;JSON files (*.json);;All files (*)");
}

Workspace::Workspace(QObject* parent) : QObject(parent) {}

QString Workspace::displayName() const {
    return m_filePath.isEmpty() ? QStringLiteral("Untitled") : QFileInfo(m_filePath).fileName();
}

void Workspace::reset(const WorkspaceData& data, const QString& filePath) {
    const QString oldBase = m_data.baseModel;
    m_data = data;
    m_data.adapterDirs.removeDuplicates();
    m_saved = m_data;
    m_forcedDirty = false;
    if (m_filePath != filePath) {
        m_filePath = filePath;
        emit filePathChanged(m_filePath);
    }
    setDirty(false);
    if (oldBase != m_data.baseModel) emit baseModelChanged(m_data.baseModel);
    emit changed();
}

std::optional<WorkspaceData> Workspace::read(const QString& path, QString* error) {
    auto fail = [&](const QString& what) -> std::optional<WorkspaceData> {
        if (error) *error = oneLine(QStringLiteral("%1: %2").arg(path, what));
        return std::nullopt;
    };
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) return fail(file.errorString());
    if (file.size() > (64 << 20)) return fail(QStringLiteral("too large for a workspace file"));
    QJsonParseError parseError;
    const QJsonDocument doc = QJsonDocument::fromJson(file.readAll(), &parseError);
    if (parseError.error != QJsonParseError::NoError)
        return fail(QStringLiteral("not valid JSON (%1 at offset %2)")
                        .arg(parseError.errorString())
                        .arg(parseError.offset));
    if (!doc.isObject()) return fail(QStringLiteral("not a LoRA Fleet workspace (no JSON object)"));
    const QJsonObject root = doc.object();
    if (root.value("format").toString() != QLatin1String(kFormat))
        return fail(QStringLiteral("not a LoRA Fleet workspace (\"format\" is not \"%1\")").arg(kFormat));
    const int version = root.value("version").toInt(-1);
    if (version < 1) return fail(QStringLiteral("\"version\" must be a positive integer"));
    if (version > kFormatVersion)
        return fail(QStringLiteral("written by a newer LoRA Fleet (format version %1, this one reads %2)")
                        .arg(version)
                        .arg(kFormatVersion));

    const QDir base = QFileInfo(path).absoluteDir();
    WorkspaceData data;
    const QJsonValue model = root.value("base_model");
    if (model.isObject()) {
        const QJsonObject m = model.toObject();
        if (m.contains("preset")) {
            data.baseModel = m.value("preset").toString();
            if (!isPreset(data.baseModel))
                return fail(QStringLiteral("unknown base model preset \"%1\"").arg(data.baseModel));
        } else if (m.value("path").isString()) {
            data.baseModel = absoluteClean(m.value("path").toString(), base);
        } else {
            return fail(QStringLiteral("\"base_model\" needs a \"preset\" or a \"path\""));
        }
    } else if (!model.isNull() && !model.isUndefined()) {
        return fail(QStringLiteral("\"base_model\" must be an object or null"));
    }
    const QJsonValue adapters = root.value("adapters");
    if (!adapters.isUndefined() && !adapters.isArray())
        return fail(QStringLiteral("\"adapters\" must be a list"));
    for (const QJsonValue& v : adapters.toArray()) {
        if (!v.isString() || v.toString().isEmpty())
            return fail(QStringLiteral("\"adapters\" must be a list of folder paths"));
        data.adapterDirs << absoluteClean(v.toString(), base);
    }
    data.adapterDirs.removeDuplicates();
    const QJsonValue compression = root.value("compression");
    if (compression.isObject())
        data.compression = compression.toObject();
    else if (!compression.isNull() && !compression.isUndefined())
        return fail(QStringLiteral("\"compression\" must be an object"));
    const QJsonValue bank = root.value("bank");
    if (bank.isString() && !bank.toString().isEmpty())
        data.bankPath = absoluteClean(bank.toString(), base);
    else if (!bank.isNull() && !bank.isUndefined() && !bank.isString())
        return fail(QStringLiteral("\"bank\" must be a path or null"));
    return data;
}

QByteArray Workspace::toJson(const WorkspaceData& data, const QString& path) {
    const QDir base = QFileInfo(path).absoluteDir();
    QJsonObject root;
    root.insert("format", QLatin1String(kFormat));
    root.insert("version", kFormatVersion);
    if (data.baseModel.isEmpty())
        root.insert("base_model", QJsonValue::Null);
    else if (isPreset(data.baseModel))
        root.insert("base_model", QJsonObject{{"preset", data.baseModel}});
    else
        root.insert("base_model", QJsonObject{{"path", portable(data.baseModel, base)}});
    QJsonArray adapters;
    for (const QString& dir : data.adapterDirs)
        adapters.append(portable(dir, base));
    root.insert("adapters", adapters);
    root.insert("compression", data.compression);
    root.insert("bank",
                data.bankPath.isEmpty() ? QJsonValue(QJsonValue::Null) : portable(data.bankPath, base));
    return QJsonDocument(root).toJson(QJsonDocument::Indented);
}

bool Workspace::save(const QString& path, QString* error) {
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly)) {
        if (error) *error = oneLine(QStringLiteral("%1: %2").arg(path, file.errorString()));
        return false;
    }
    file.write(toJson(m_data, path));
    if (!file.commit()) {
        if (error) *error = oneLine(QStringLiteral("%1: %2").arg(path, file.errorString()));
        return false;
    }
    const QString absolute = QFileInfo(path).absoluteFilePath();
    if (m_filePath != absolute) {
        m_filePath = absolute;
        emit filePathChanged(m_filePath);
    }
    m_saved = m_data;
    m_forcedDirty = false;
    setDirty(false);
    return true;
}

void Workspace::setBaseModel(const QString& baseModel) {
    const QString value =
        isPreset(baseModel) || baseModel.isEmpty() ? baseModel : absoluteClean(baseModel, QDir::current());
    if (value == m_data.baseModel) return;
    m_data.baseModel = value;
    emit baseModelChanged(value);
    contentChanged();
}

void Workspace::addAdapterDirs(const QStringList& dirs) {
    bool any = false;
    for (const QString& d : dirs) {
        if (d.isEmpty() || m_data.adapterDirs.contains(d)) continue;
        m_data.adapterDirs << d;
        any = true;
    }
    if (any) contentChanged();
}

void Workspace::removeAdapterDirs(const QStringList& dirs) {
    qsizetype removed = 0;
    for (const QString& d : dirs)
        removed += m_data.adapterDirs.removeAll(d);
    if (removed) contentChanged();
}

void Workspace::setAdapterDirs(const QStringList& dirs) {
    QStringList unique = dirs;
    unique.removeDuplicates();
    if (unique == m_data.adapterDirs) return;
    m_data.adapterDirs = unique;
    contentChanged();
}

void Workspace::setCompressionSettings(const QJsonObject& settings) {
    if (settings == m_data.compression) return;
    m_data.compression = settings;
    contentChanged();
}

void Workspace::setBankPath(const QString& path) {
    if (path == m_data.bankPath) return;
    m_data.bankPath = path;
    contentChanged();
}

std::optional<io::model_geometry> Workspace::baseGeometry(QString* error) const {
    if (m_data.baseModel.isEmpty()) return std::nullopt;
    try {
        return io::resolve_geometry(m_data.baseModel.toStdString());
    } catch (const lorafleet::error& e) {
        if (error) *error = oneLine(QString::fromStdString(e.what()));
    }
    return std::nullopt;
}

void Workspace::setDirty(bool dirty) {
    if (m_dirty == dirty) return;
    m_dirty = dirty;
    emit dirtyChanged(dirty);
}

void Workspace::markClean() {
    m_saved = m_data;
    m_forcedDirty = false;
    setDirty(false);
}

void Workspace::markModified() {
    m_forcedDirty = true;
    setDirty(true);
    emit changed();
}

void Workspace::contentChanged() {
    setDirty(m_forcedDirty || m_data != m_saved);
    emit changed();
}

} // namespace lorafleet::ui
