// Session (see session.hpp).
#include "ui/workspace/session.hpp"

#include "engine/bank/bank_format.hpp"
#include "ui/common/engine_host.hpp"
#include "ui/common/text_format.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/import_controller.hpp"
#include "ui/workspace/workspace.hpp"

#include <QDir>
#include <QFileInfo>
#include <QHash>
#include <QSet>

#include <algorithm>
#include <limits>

namespace lorafleet::ui {

Session::Session(QObject* parent)
    : QObject(parent), m_workspace(new Workspace(this)), m_store(new FleetStore(this)),
      m_host(new EngineHost(this)), m_importer(new ImportController(m_store, m_host, this)),
      m_compressor(new CompressController(this, this)) {
    connect(m_store, &FleetStore::rowsInserted, this, [this](int first, int last) {
        QStringList dirs;
        for (int r = first; r <= last; ++r)
            dirs << m_store->entry(r).summary.dir;
        m_workspace->addAdapterDirs(dirs);
    });
    connect(m_store, &FleetStore::adaptersRemoved, m_workspace, &Workspace::removeAdapterDirs);
    connect(m_importer, &ImportController::finished, this, &Session::onImportFinished);
    connect(m_importer, &ImportController::idle, this, &Session::idle);
}

Session::~Session() {
    m_importer->abort(); // join the workers before the store goes
    delete m_bankJob.data();
    delete m_compressor;
}

void Session::newWorkspace() {
    m_opening = {};
    m_importer->abort();
    m_compressor->cancel();
    delete m_bankJob.data();
    m_store->clear();
    m_workspace->reset();
    setBank(nullptr);
    applyBaseModel();
}

bool Session::openWorkspace(const QString& path, QString* error) {
    const auto data = Workspace::read(path, error);
    if (!data) return false;
    m_importer->abort();
    m_compressor->cancel();
    delete m_bankJob.data();
    m_store->clear();
    m_workspace->reset(*data, QFileInfo(path).absoluteFilePath());
    setBank(nullptr);
    applyBaseModel();
    if (!data->bankPath.isEmpty()) loadBank(data->bankPath);
    m_opening = {data->adapterDirs, !data->adapterDirs.isEmpty(), false};
    m_importer->importPaths(data->adapterDirs);
    if (data->adapterDirs.isEmpty()) emit operationFinished(QStringLiteral("Opened %1").arg(path));
    return true;
}

bool Session::saveWorkspace(const QString& path, QString* error) {
    if (isBankUnsaved()) {
        const QString bankPath = bankPathFor(path);
        try {
            bank::write_bank(bankPath.toStdString(), *m_bank, {io::dtype::F16, /*overwrite=*/true});
        } catch (const std::exception& e) {
            if (error) *error = oneLine(QStringLiteral("cannot write the bank: %1").arg(e.what()));
            return false;
        }
        markBankSaved(bankPath);
    }
    if (!m_workspace->save(path, error)) return false;
    emit operationFinished(QStringLiteral("Saved %1").arg(QFileInfo(path).absoluteFilePath()));
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

void Session::importPaths(const QStringList& paths) {
    m_opening.tainted = true;
    m_importer->importPaths(paths);
}

void Session::removeRows(const QList<int>& storeRows) {
    m_opening.tainted = true;
    const int before = m_store->size();
    m_store->removeRows(storeRows);
    const int removed = before - m_store->size();
    if (removed > 0)
        emit operationFinished(QStringLiteral("Removed %1").arg(plural(removed, "adapter", "adapters")));
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
    if (m_bankUnsaved) m_workspace->markModified();
    applyBankResults();
    emit bankChanged();
}

void Session::markBankSaved(const QString& path) {
    m_bankUnsaved = false;
    m_workspace->setBankPath(QDir::cleanPath(QFileInfo(path).absoluteFilePath()));
}

QString Session::bankPathFor(const QString& workspacePath) const {
    if (!m_workspace->data().bankPath.isEmpty()) return m_workspace->data().bankPath;
    const QFileInfo info(workspacePath);
    return QDir::cleanPath(info.absoluteDir().filePath(info.completeBaseName() + QStringLiteral(".bank")));
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
        const auto it = byName.constFind(QString::fromStdString(entry.adapter->name));
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
                    setBank(*out);
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
