// Session (see session.hpp).
#include "ui/workspace/session.hpp"

#include "engine/bank/bank_format.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/text_format.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/import_controller.hpp"
#include "ui/workspace/adapter_copy.hpp"
#include "ui/workspace/remove_adapters_command.hpp"
#include "ui/workspace/workspace.hpp"

#include <QDir>
#include <QFileInfo>
#include <QHash>
#include <QSet>
#include <QUndoStack>

#include <algorithm>
#include <limits>

namespace lorafleet::ui {

Session::Session(QObject* parent)
    : QObject(parent), m_workspace(new Workspace(this)), m_store(new FleetStore(this)),
      m_host(new EngineHost(this)), m_importer(new ImportController(m_store, m_host, this)),
      m_compressor(new CompressController(this, this)), m_undo(new QUndoStack(this)) {
    m_undo->setUndoLimit(100);
    connect(m_store, &FleetStore::rowsInserted, this, &Session::onRowsInserted);
    connect(m_store, &FleetStore::resetDone, this, [this] {
        if (m_restoring) onRowsInserted(0, m_store->size() - 1); // a large undo inserts by reset
    });
    connect(m_store, &FleetStore::adaptersRemoved, m_workspace, &Workspace::removeAdapterDirs);
    connect(m_store, &FleetStore::fleetChanged, this, &Session::bankStateChanged);
    connect(m_importer, &ImportController::finished, this, &Session::onImportFinished);
    connect(m_importer, &ImportController::idle, this, &Session::idle);
}

Session::~Session() {
    m_importer->abort(); // join the workers before the store goes
    delete m_bankJob.data();
    delete m_compressor;
}

void Session::onRowsInserted(int first, int last) {
    QStringList dirs;
    for (int r = first; r <= last; ++r) {
        const FleetEntry& e = m_store->entry(r);
        dirs << e.summary.dir;
        // Entries of the import that opens a workspace are what its bank was made from; an undo puts
        // back entries that keep their earlier standing; anything else is new to the bank.
        const bool opening = m_opening.pending && m_importer->currentPaths() == m_opening.listed;
        if (!opening && !m_restoring) m_notInBank.insert(e.serial);
    }
    m_workspace->addAdapterDirs(dirs);
}

void Session::newWorkspace() {
    m_undo->clear();
    m_notInBank.clear();
    m_opening = {};
    m_importer->abort();
    m_compressor->cancel();
    delete m_bankJob.data();
    m_store->clear();
    m_workspace->reset();
    setBank(nullptr);
    applyBaseModel();
    emit workspaceReset();
}

bool Session::openWorkspace(const QString& path, QString* error) {
    const auto data = Workspace::read(path, error);
    if (!data) return false;
    m_importer->abort();
    m_compressor->cancel();
    delete m_bankJob.data();
    m_undo->clear();
    m_notInBank.clear();
    m_store->clear();
    m_workspace->reset(*data, QFileInfo(path).absoluteFilePath());
    setBank(nullptr);
    applyBaseModel();
    emit workspaceReset();
    if (!data->bankPath.isEmpty()) loadBank(data->bankPath);
    m_opening = {data->adapterDirs, !data->adapterDirs.isEmpty(), false};
    // Names were unique when saved; adapters renamed on import get the same new names again.
    m_importer->importPaths(data->adapterDirs, DuplicateNames::Rename);
    if (data->adapterDirs.isEmpty()) emit operationFinished(QStringLiteral("Opened %1").arg(path));
    return true;
}

bool Session::saveWorkspace(const QString& path, QString* error) {
    const QString absolute = QDir::cleanPath(QFileInfo(path).absoluteFilePath());
    // 1. Adapters in temporary folders (the demo's) are copied beside the workspace.
    QHash<QString, std::pair<QString, QString>> relocated;
    QStringList dirs = m_workspace->data().adapterDirs;
    for (const QString& root : m_temporaryRoots) {
        QStringList inside;
        for (const QString& d : dirs)
            if (d.startsWith(root + QLatin1Char('/'))) inside << d;
        if (inside.isEmpty()) continue;
        QString why;
        const auto moved = copyAdapterFolders(inside, root, adapterFolderFor(absolute), &why);
        if (!moved) {
            if (error) *error = oneLine(QStringLiteral("cannot copy the adapters: %1").arg(why));
            return false;
        }
        for (auto it = moved->constBegin(); it != moved->constEnd(); ++it) {
            relocated.insert(it.key(), {it.value(), ImportJob::keyOf(it.value())});
            dirs.replace(dirs.indexOf(it.key()), it.value());
        }
    }
    if (!relocated.isEmpty()) {
        m_store->relocate(relocated);
        m_workspace->setAdapterDirs(dirs);
    }
    // 2. The bank goes to NAME.bank (the engine's writer swaps the whole folder in atomically); no
    //    other bank is ever written.
    const QString bankPath = bankPathFor(absolute);
    if (m_bank && (m_bankUnsaved || m_workspace->data().bankPath != bankPath)) {
        try {
            bank::write_bank(bankPath.toStdString(), *m_bank, {io::dtype::F16, /*overwrite=*/true});
        } catch (const std::exception& e) {
            if (error) *error = oneLine(QStringLiteral("cannot write the bank: %1").arg(e.what()));
            return false;
        }
        m_bankUnsaved = false;
        m_workspace->setBankPath(bankPath);
    }
    // 3. The workspace file last (QSaveFile: atomic).
    if (!m_workspace->save(absolute, error)) return false;
    emit operationFinished(QStringLiteral("Saved %1").arg(absolute));
    return true;
}

bool Session::setBaseModel(const QString& baseModel, QString* error) {
    if (!baseModel.isEmpty()) {
        Workspace probe;
        probe.setBaseModel(baseModel);
        if (!probe.baseGeometry(error)) return false;
    }
    m_opening.tainted = true;
    m_workspace->setBaseModel(baseModel);
    applyBaseModel();
    return true;
}

void Session::applyBaseModel() {
    QString error;
    auto geometry = m_workspace->baseGeometry(&error);
    if (!geometry && !error.isEmpty())
        emit operationFinished(
            QStringLiteral("Base model unavailable, adapters are not checked against it: %1").arg(error));
    m_importer->setBaseModel(std::move(geometry));
}

bool Session::importPaths(const QStringList& paths, QString* error) {
    return importPaths(paths, m_importer->duplicateNames(), error);
}

bool Session::importPaths(const QStringList& paths, DuplicateNames policy, QString* error) {
    if (m_compressor->isRunning()) {
        const QString why = QStringLiteral(
            "Import refused: a compression is running (wait for it or cancel it, then import again)");
        if (error) *error = why;
        emit operationFinished(why);
        return false;
    }
    m_opening.tainted = true;
    m_importer->importPaths(paths, policy);
    return true;
}

void Session::removeRows(const QList<int>& storeRows) {
    bool any = false;
    for (int r : storeRows)
        any = any || (r >= 0 && r < m_store->size());
    if (!any) return;
    m_undo->push(new RemoveAdaptersCommand(this, storeRows)); // removes them now
}

void Session::addTemporaryAdapterRoot(const QString& dir) {
    const QString clean = QDir::cleanPath(QFileInfo(dir).absoluteFilePath());
    if (!m_temporaryRoots.contains(clean)) m_temporaryRoots << clean;
}

bool Session::isInBank(const FleetEntry& entry) const {
    return m_bank && !m_notInBank.contains(entry.serial) && m_bank->find_adapter(entry.adapter->name);
}

bool Session::isInBank(const FleetEntry& entry, const QSet<QString>& bankNames) const {
    return !m_notInBank.contains(entry.serial) &&
           bankNames.contains(QString::fromStdString(entry.adapter->name));
}

Session::BankStaleness Session::bankStaleness() const {
    BankStaleness out;
    if (!m_bank || m_opening.pending || isLoadingBank()) return out;
    QSet<QString> names;
    for (const auto& a : m_bank->adapters)
        names.insert(QString::fromStdString(a.name));
    QSet<QString> present;
    for (const auto& e : m_store->entries()) {
        if (isInBank(e, names))
            present.insert(QString::fromStdString(e.adapter->name));
        else
            ++out.added;
    }
    for (const auto& a : m_bank->adapters)
        if (!present.contains(QString::fromStdString(a.name))) ++out.removed;
    return out;
}

QString Session::bankStalenessText() const {
    const BankStaleness s = bankStaleness();
    if (!s.isStale()) return {};
    return QStringLiteral("The bank is out of date: %1 added, %2 removed since it was compressed")
        .arg(plural(s.added, "adapter", "adapters"))
        .arg(s.removed);
}

void Session::dismissProblems() {
    QStringList dirs;
    for (const auto& p : m_store->problems())
        dirs << p.path;
    m_opening.tainted = true;
    m_workspace->removeAdapterDirs(dirs);
    m_store->clearProblems();
}

bool Session::isBusy() const {
    return m_importer->isBusy() || isLoadingBank() || m_compressor->isRunning();
}

void Session::setBank(std::shared_ptr<const bank::compressed_bank> bank, bool unsaved) {
    if (!bank && !m_bank) return;
    m_bank = std::move(bank);
    m_bankUnsaved = m_bank && unsaved;
    // A new compression was made from the whole fleet as it is now (imports are refused meanwhile).
    if (m_bankUnsaved) {
        m_notInBank.clear();
        m_workspace->markModified();
    }
    applyBankResults();
    emit bankChanged();
    emit bankStateChanged();
}

QString Session::bankPathFor(const QString& workspacePath) {
    const QFileInfo info(workspacePath);
    return QDir::cleanPath(info.absoluteDir().filePath(info.completeBaseName() + QStringLiteral(".bank")));
}

QString Session::adapterFolderFor(const QString& workspacePath) {
    const QFileInfo info(workspacePath);
    return QDir::cleanPath(
        info.absoluteDir().filePath(info.completeBaseName() + QStringLiteral(".adapters")));
}

void Session::applyBankResults() {
    const int n = m_store->size();
    if (n == 0) return;
    QHash<QString, std::pair<int, double>> byName;
    if (m_bank)
        for (const auto& a : m_bank->adapters)
            byName.insert(QString::fromStdString(a.name), {a.cluster, a.mean_error()});
    std::vector<FleetStore::AdapterResult> results;
    results.reserve(std::size_t(n));
    for (const auto& entry : m_store->entries()) {
        const auto it = m_notInBank.contains(entry.serial)
                            ? byName.constEnd()
                            : byName.constFind(QString::fromStdString(entry.adapter->name));
        FleetStore::AdapterResult r;
        r.adapter = entry.adapter.get();
        r.cluster = it == byName.constEnd() ? -1 : it->first;
        r.error = it == byName.constEnd() ? std::numeric_limits<double>::quiet_NaN() : it->second;
        results.push_back(r);
    }
    m_store->setResults(results);
}

void Session::loadBank(const QString& path) {
    if (!QFileInfo(path).isDir()) {
        emit operationFinished(QStringLiteral("Bank %1 not found; compress the fleet again").arg(path));
        return;
    }
    auto out = std::make_shared<std::shared_ptr<const bank::compressed_bank>>();
    const std::string dir = path.toStdString();
    m_bankJob = m_host->start(
        QStringLiteral("Reading bank"),
        [out, dir](JobContext& ctx) {
            ctx.setStage(QStringLiteral("Reading bank"));
            *out = std::make_shared<const bank::compressed_bank>(bank::read_bank(dir));
        },
        this);
    EngineJob* job = m_bankJob.data();
    connect(job, &EngineJob::finished, this,
            [this, job, out, path](EngineJob::Outcome outcome, const QString& msg) {
                job->deleteLater();
                m_bankJob = nullptr;
                if (outcome == EngineJob::Outcome::Succeeded) {
                    setBank(*out); // bankStateChanged follows
                    emit operationFinished(QStringLiteral("Read bank %1").arg(path));
                } else if (outcome == EngineJob::Outcome::Failed) {
                    emit operationFinished(QStringLiteral("Cannot read the bank: %1").arg(msg));
                }
                if (!isBusy()) emit idle();
            });
}

void Session::onImportFinished(const ImportReport& report) {
    if (m_bank) applyBankResults();
    if (m_opening.pending && report.paths == m_opening.listed) {
        m_opening.pending = false;
        emit bankStateChanged();
        if (!m_opening.tainted && !report.cancelled && report.failure.isEmpty()) adoptOpenedFolders();
        emit operationFinished(
            QStringLiteral("Opened %1: %2").arg(m_workspace->displayName(), report.summary()));
        return;
    }
    emit operationFinished(report.summary());
}

void Session::adoptOpenedFolders() {
    // The workspace may list parent folders (hand-written files); what the fleet now holds is one entry
    // per adapter. Entries that were expanded are replaced by their adapters, entries that failed stay
    // (so a temporarily missing folder is not dropped on the next save). The result is equivalent to
    // the file on disk, so the document stays clean.
    QStringList dirs = m_store->dirs();
    const QSet<QString> loaded(dirs.begin(), dirs.end());
    for (const QString& entry : m_opening.listed) {
        if (loaded.contains(entry)) continue;
        const QString prefix = entry + QLatin1Char('/');
        const bool expanded = std::any_of(dirs.begin(), dirs.end(),
                                          [&prefix](const QString& d) { return d.startsWith(prefix); });
        if (!expanded) dirs << entry;
    }
    m_workspace->setAdapterDirs(dirs);
    m_workspace->markClean();
}

} // namespace lorafleet::ui
