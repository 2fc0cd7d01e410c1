// The compression panel and its controller (ui/compress) on a synthetic PEFT fleet with planted clusters,
// imported through the Session like the menu does:
//   - a run through the panel's Run button fills the session's bank and the store's cluster / error
//     columns with what a direct engine compress_fleet call (its own PeftModuleSource over freshly loaded
//     adapters) computes with the same settings and seed: the same partition, the same per-module errors
//     to 1e-9; the planted groups are recovered; the workspace is modified and holds the settings;
//   - cancelling mid-run, and a run that fails (GPU requested on a build without CUDA), leave the
//     workspace JSON, the store's results and the bank exactly as before;
//   - saving the workspace writes the unsaved bank beside it; opening the file in a new session restores
//     the settings, the bank path, the bank itself and the store's results;
//   - the settings' JSON round trip, and defaults for foreign or partial objects.
#include "engine/backend/compress_backends.hpp"
#include "engine/backend/device_registry.hpp"
#include "engine/compress/peft_module_source.hpp"
#include "engine/io/fleet.hpp"
#include "engine/io/peft_adapter.hpp"
#include "tests/support/planted_fleet.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/compress/compress_controller.hpp"
#include "ui/compress/compress_panel.hpp"
#include "ui/compress/compress_settings.hpp"
#include "ui/export/error_report.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QJsonDocument>
#include <QProgressBar>
#include <QPushButton>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;
using Outcome = ui::EngineJob::Outcome;

namespace {

constexpr int kAdapters = 12;
constexpr int kGroups = 2; // writeTinyFleet plants 2 groups of rank-4 adapters (5% noise)

ui::CompressSettings exactSettings() {
    ui::CompressSettings s;
    s.method = compress::jd_method::full;
    s.rank = 4;
    s.clusters = kGroups;
    s.seed = 77;
    s.device = "cpu";
    return s;
}

// Runs the controller to its end; returns the outcome.
Outcome runToEnd(ui::Session& session, const std::function<void()>& start) {
    QSignalSpy finished(session.compressor(), &ui::CompressController::finished);
    start();
    if (!finished.wait(240000)) return Outcome::Failed;
    return finished.at(0).at(0).value<Outcome>();
}

struct Snapshot {
    QByteArray workspaceJson;
    bool dirty = false;
    std::vector<std::pair<int, double>> results; // per store row
    const bank::compressed_bank* bank = nullptr;
    std::string bankReport;
    bool operator==(const Snapshot& o) const {
        if (results.size() != o.results.size()) return false;
        for (std::size_t i = 0; i < results.size(); ++i) {
            const auto& a = results[i];
            const auto& b = o.results[i];
            if (a.first != b.first) return false;
            if (!(a.second == b.second || (std::isnan(a.second) && std::isnan(b.second)))) return false;
        }
        return workspaceJson == o.workspaceJson && dirty == o.dirty && bank == o.bank &&
               bankReport == o.bankReport;
    }
};

Snapshot snapshot(const ui::Session& s) {
    Snapshot snap;
    snap.workspaceJson = ui::Workspace::toJson(s.workspace()->data(), QStringLiteral("/tmp/any.lorafleet"));
    snap.dirty = s.workspace()->isDirty();
    for (const auto& e : s.store()->entries())
        snap.results.emplace_back(e.cluster, e.error);
    snap.bank = s.bank().get();
    if (s.bank()) snap.bankReport = ui::errorReportCsv(*s.bank());
    return snap;
}

} // namespace

class TestCompressPanel : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_dir;
    synth::synth_result m_fleet;

    QString fleetDir() const { return m_dir.filePath("fleet"); }
    void importFleet(ui::Session& session) {
        session.importPaths({fleetDir()});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), kAdapters);
    }

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_dir.isValid());
        m_fleet = test::writeTinyFleet(fleetDir(), kAdapters, 5);
        QCOMPARE(m_fleet.plan.clusters, kGroups);
    }

    void settingsJsonRoundTrip() {
        ui::CompressSettings s;
        s.method = compress::jd_method::diag;
        s.rank = 12;
        s.clusters = 0;
        s.targetError = 0.0625;
        s.normalize = false;
        s.device = "cuda";
        s.seed = 18446744073709551557ull; // beyond a double's exact integers
        QCOMPARE(ui::CompressSettings::fromJson(s.toJson()), s);
        // Through the text of a saved file too.
        const auto text = QJsonDocument(s.toJson()).toJson();
        QCOMPARE(ui::CompressSettings::fromJson(QJsonDocument::fromJson(text).object()), s);
        // Foreign or broken values fall back to the defaults, field by field.
        const auto d = ui::CompressSettings::fromJson(QJsonObject{
            {"method", "svd"}, {"rank", -3}, {"clusters", "many"}, {"device", "tpu"}, {"seed", 1.5}});
        QCOMPARE(d, ui::CompressSettings{});
        const auto o = s.toOptions();
        QVERIFY(o.jd.method == compress::jd_method::diag);
        QCOMPARE(o.jd.rank, std::int64_t(12));
        QCOMPARE(o.clusters, 0);
        QCOMPARE(o.target_error, 0.0625);
        QVERIFY(o.jd.norm == compress::normalization::none);
        QCOMPARE(o.jd.seed, s.seed);
    }

    void runMatchesEngine() {
        ui::Session session;
        importFleet(session);
        session.workspace()->markClean();
        ui::CompressPanel panel(&session);
        const auto settings = exactSettings();
        panel.setSettings(settings);
        QCOMPARE(panel.settings(), settings);
        QVERIFY(panel.runButton()->isEnabled());
        QSignalSpy bankChanged(&session, &ui::Session::bankChanged);
        QSignalSpy progress(session.compressor(), &ui::CompressController::progressChanged);
        QCOMPARE(runToEnd(session, [&] { panel.runButton()->click(); }), Outcome::Succeeded);
        QCOMPARE(bankChanged.count(), 1);
        QCOMPARE(panel.progressBar()->value(), panel.progressBar()->maximum());
        // The engine's reports reach the GUI thread (coalesced), the last one being the end of the run.
        QVERIFY(progress.count() >= 1);
        QCOMPARE(session.compressor()->progress().fraction, 1.0);
        QVERIFY(!session.compressor()->progress().stage.isEmpty());
        const auto bank = session.bank();
        QVERIFY(bank);
        QCOMPARE(int(bank->adapters.size()), kAdapters);

        // The reference: the engine alone, on adapters loaded again from disk, same options and seed.
        io::fleet adapters;
        for (const auto& e : session.store()->entries())
            adapters.push_back(
                std::make_shared<const io::peft_adapter>(io::load_peft_adapter(e.summary.dir.toStdString())));
        compress::PeftModuleSource source(adapters);
        auto backend = lorafleet::backend::make_compress_backend("cpu");
        const auto ref = compress::compress_fleet(source, *backend, settings.toOptions());
        QCOMPARE(ref.k, kGroups);
        QCOMPARE(bank->clusters, ref.k);
        std::vector<int> got;
        for (std::size_t i = 0; i < adapters.size(); ++i) {
            const auto idx = bank->find_adapter(adapters[i]->name);
            QVERIFY(idx);
            const auto& a = bank->adapters[*idx];
            got.push_back(a.cluster);
            QCOMPARE(a.errors.size(), ref.modules.size());
            for (std::size_t m = 0; m < ref.modules.size(); ++m) {
                QCOMPARE(bank->modules[m].path, ref.modules[m].name);
                QVERIFY2(std::abs(a.errors[m] - ref.errors[i][m]) <= 1e-9,
                         qPrintable(QString("%1 module %2: %3 vs %4")
                                        .arg(QString::fromStdString(a.name))
                                        .arg(m)
                                        .arg(a.errors[m])
                                        .arg(ref.errors[i][m])));
            }
            QVERIFY(std::abs(a.mean_error() - ref.adapter_error[i]) <= 1e-9);
        }
        QVERIFY(test::same_partition(got, ref.assignment));
        // The planted groups (by adapter index in folder order = import order) are recovered.
        std::vector<int> planted;
        for (const auto& e : session.store()->entries()) {
            const int index = e.summary.name.mid(QStringLiteral("adapter-").size()).toInt();
            planted.push_back(m_fleet.plan.group[std::size_t(index)]);
        }
        QVERIFY(test::same_partition(got, planted));
        // Rank-4 planted subspaces at rank 4: what is left is about the generator's 5% noise (squared
        // relative norm 0.0025) plus BF16 rounding of the stored weights; one cluster cannot hold both
        // groups' subspaces and is far worse.
        QVERIFY2(bank->mean_error() > 0.0 && bank->mean_error() < 0.005,
                 qPrintable(QString::number(bank->mean_error())));
        auto oneCluster = settings.toOptions();
        oneCluster.clusters = 1;
        const double single = compress::compress_fleet(source, *backend, oneCluster).mean_error;
        QVERIFY2(single > 10 * bank->mean_error(), qPrintable(QString("k=1: %1").arg(single)));

        // The store's columns show the bank's results.
        for (std::size_t i = 0; i < adapters.size(); ++i) {
            const auto& e = session.store()->entry(int(i));
            QCOMPARE(e.cluster, got[i]);
            QCOMPARE(e.error, bank->adapters[*bank->find_adapter(adapters[i]->name)].mean_error());
        }
        // The workspace holds the settings and is modified (the bank is not saved yet).
        QCOMPARE(ui::CompressSettings::fromJson(session.workspace()->data().compression), settings);
        QVERIFY(session.workspace()->isDirty());
        QVERIFY(session.isBankUnsaved());
        // The panel shows the result.
        const auto summary = session.compressor()->lastSummary();
        QVERIFY(summary);
        QCOMPARE(summary->clusters, kGroups);
        QCOMPARE(summary->device, QStringLiteral("cpu"));
        QVERIFY(summary->bytesOriginal > 0 && summary->bytesCompressed > 0);
        QCOMPARE(summary->bytesCompressed, bank->stored_parameters() * 2);
        quint64 original = 0;
        for (const auto& a : adapters)
            original += a->weight_bytes();
        QCOMPARE(summary->bytesOriginal, original);
        QVERIFY2(panel.resultText().contains(QStringLiteral("Clusters\t2")), qPrintable(panel.resultText()));
        QVERIFY(panel.resultText().contains(QStringLiteral("Ratio\t")));
        session.workspace()->markClean();
    }

    void cancelChangesNothing() {
        ui::Session session;
        importFleet(session);
        QCOMPARE(runToEnd(session, [&] { QVERIFY(session.compressor()->start(exactSettings())); }),
                 Outcome::Succeeded);
        session.workspace()->markClean();
        const Snapshot before = snapshot(session);
        QVERIFY(before.bank);

        // A long run (automatic k with an unreachable target tries every k up to the cap), cancelled
        // from its first progress report.
        ui::CompressSettings slow = exactSettings();
        slow.rank = 2;
        slow.clusters = 0;
        slow.targetError = 1e-12;
        slow.seed = 3;
        double cancelledAt = -1;
        connect(session.compressor(), &ui::CompressController::progressChanged, this,
                [&](const ui::CompressController::Progress& p) {
                    if (cancelledAt < 0) {
                        cancelledAt = p.fraction;
                        session.compressor()->cancel();
                    }
                });
        QCOMPARE(runToEnd(session, [&] { QVERIFY(session.compressor()->start(slow)); }), Outcome::Cancelled);
        QVERIFY2(cancelledAt >= 0 && cancelledAt < 1.0, "cancelled mid-run");
        QVERIFY(!session.compressor()->isRunning());
        QVERIFY(snapshot(session) == before);

        // A run that fails (no such backend in this build) changes nothing either.
        if (!backend::devices().compiled) {
            ui::CompressSettings gpu = exactSettings();
            gpu.device = "cuda";
            QSignalSpy finished(session.compressor(), &ui::CompressController::finished);
            QVERIFY(session.compressor()->start(gpu));
            QVERIFY(finished.wait(60000));
            QCOMPARE(finished.at(0).at(0).value<Outcome>(), Outcome::Failed);
            QVERIFY2(!finished.at(0).at(1).toString().isEmpty(), "the failure says why");
            QVERIFY(snapshot(session) == before);
        }
        // Busy and empty fleets are refused without starting anything.
        ui::Session empty;
        QString error;
        QVERIFY(!empty.compressor()->start(exactSettings(), &error));
        QVERIFY(error.contains("empty"));
    }

    void saveAndReopenRestoresBank() {
        QTemporaryDir dir;
        const QString wsPath = dir.filePath("project.lorafleet");
        std::shared_ptr<const bank::compressed_bank> original;
        ui::CompressSettings settings = exactSettings();
        settings.method = compress::jd_method::diag;
        {
            ui::Session session;
            importFleet(session);
            QCOMPARE(runToEnd(session, [&] { QVERIFY(session.compressor()->start(settings)); }),
                     Outcome::Succeeded);
            original = session.bank();
            QString error;
            QVERIFY2(session.saveWorkspace(wsPath, &error), qPrintable(error));
            QVERIFY(!session.workspace()->isDirty());
            QVERIFY(!session.isBankUnsaved());
            QCOMPARE(session.workspace()->data().bankPath, dir.filePath("project.bank"));
            QVERIFY(QFileInfo(dir.filePath("project.bank/manifest.json")).isFile());
        }
        const auto data = ui::Workspace::read(wsPath, nullptr);
        QVERIFY(data);
        QCOMPARE(data->bankPath, dir.filePath("project.bank"));
        QCOMPARE(ui::CompressSettings::fromJson(data->compression), settings);

        ui::Session reopened;
        ui::CompressPanel panel(&reopened);
        QString error;
        QVERIFY2(reopened.openWorkspace(wsPath, &error), qPrintable(error));
        QVERIFY(test::waitForImport(reopened));
        QTRY_VERIFY_WITH_TIMEOUT(!reopened.isBusy(), 60000);
        QCOMPARE(panel.settings(), settings); // the panel follows the opened workspace
        const auto bank = reopened.bank();
        QVERIFY(bank);
        QVERIFY(!reopened.isBankUnsaved());
        QVERIFY(!reopened.workspace()->isDirty());
        QVERIFY(bank->kind == lorafleet::compress::jd_method::diag);
        QCOMPARE(ui::errorReportCsv(*bank), ui::errorReportCsv(*original)); // names, clusters, errors
        for (const auto& e : reopened.store()->entries()) {
            const auto idx = bank->find_adapter(e.adapter->name);
            QVERIFY(idx);
            QCOMPARE(e.cluster, bank->adapters[*idx].cluster);
            QCOMPARE(e.error, bank->adapters[*idx].mean_error());
        }
        QVERIFY(panel.resultText().contains(QStringLiteral("Clusters\t2")));
    }
};

QTEST_MAIN(TestCompressPanel)
#include "test_compress_panel.moc"
