// Workspace: the operator's project document, saved as JSON (".lorafleet"): the base model (a geometry
// preset name, or a config.json / model folder), the adapter folders of the fleet, the compression
// settings (an object the compression panel owns) and the path of the compressed bank. Paths inside the
// workspace file's folder are written relative to it, others absolute; in memory they are always
// absolute and cleaned.
//
// Invariants: the file on disk is replaced atomically (QSaveFile) or not at all; isDirty() is true
// exactly when the content differs from what was last loaded or saved (setters that change nothing
// leave it clean) or markModified() recorded a change held outside the document (a new compressed bank
// not yet written); adapterDirs() has no duplicates.
// Thread affinity: GUI thread.
#pragma once

#include "engine/io/hf_config.hpp"

#include <QJsonObject>
#include <QObject>
#include <QStringList>

#include <optional>

namespace lorafleet::ui {

struct WorkspaceData {
    QString baseModel; // preset name ("tinystories-656k"), an absolute path, or "" (no base model)
    QStringList adapterDirs;
    QJsonObject compression; // owned by the compression panel; kept verbatim
    QString bankPath;        // "" until a bank is written

    bool operator==(const WorkspaceData&) const = default;
};

class Workspace : public QObject {
    Q_OBJECT
public:
    static constexpr int kFormatVersion = 1;
    static QString fileFilter(); // for file dialogs
    static QString defaultSuffix() { return QStringLiteral("lorafleet"); }

    explicit Workspace(QObject* parent = nullptr);

    const WorkspaceData& data() const { return m_data; }
    const QString& filePath() const { return m_filePath; } // "" for an untitled workspace
    QString displayName() const;                           // file name, or "Untitled"
    bool isDirty() const { return m_dirty; }

    // Replaces the whole document (New / Open); clean afterwards.
    void reset(const WorkspaceData& data = {}, const QString& filePath = {});

    // Reads and validates a workspace file; nullopt with a one-line `error` on failure.
    static std::optional<WorkspaceData> read(const QString& path, QString* error);
    // JSON text of `data` as saved at `path` (relative paths are computed against its folder).
    static QByteArray toJson(const WorkspaceData& data, const QString& path);
    // Writes atomically; on success the document takes `path` as its file and becomes clean.
    bool save(const QString& path, QString* error);

    void setBaseModel(const QString& baseModel);
    void addAdapterDirs(const QStringList& dirs);
    void removeAdapterDirs(const QStringList& dirs);
    void setAdapterDirs(const QStringList& dirs); // duplicates dropped, order kept
    void setCompressionSettings(const QJsonObject& settings);
    void setBankPath(const QString& path);
    // Takes the current content as the saved state (e.g. a generated demo nobody needs to save).
    void markClean();
    // Dirty until the next save / load / markClean(), whatever the content: for state the document
    // points to but does not contain (the session's unsaved bank).
    void markModified();

    // The geometry of the base model: nullopt when none is set or it cannot be resolved (then `error`
    // says why). Resolving a preset is free; a config path is read from disk.
    std::optional<io::model_geometry> baseGeometry(QString* error = nullptr) const;

signals:
    void dirtyChanged(bool dirty);
    void filePathChanged(const QString& path);
    void baseModelChanged(const QString& baseModel);
    void changed(); // any content change

private:
    void setDirty(bool dirty);
    void contentChanged();

    WorkspaceData m_data;
    WorkspaceData m_saved; // content as last loaded or saved
    QString m_filePath;
    bool m_dirty = false;
    bool m_forcedDirty = false; // markModified() since the last save / load / markClean()
};

} // namespace lorafleet::ui
