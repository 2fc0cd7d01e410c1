// Importing adapters through Session::importPaths, the code path of File > Import Adapters... and of
// drag and drop: a real synthetic fleet of 20 tinystories-656k adapters plus one folder with a truncated
// adapter_model.safetensors gives 20 rows and 1 problem with a one-line reason; importing again skips
// duplicates; cancelling stops cleanly; an adapter for another base model is refused with the base set;
// dropping a folder on the window imports it; the details pane's norms match a dense computation.
#include "engine/analysis/module_norms.hpp"
#include "tests/support/test_paths.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/fleet/fleet_model.hpp"
#include "ui/fleet/fleet_store.hpp"
#include "ui/fleet/fleet_view.hpp"
#include "ui/fleet/module_table_model.hpp"
#include "ui/main/main_window.hpp"
#include "ui/workspace/workspace.hpp"

#include <QAbstractItemModelTester>
#include <QMimeData>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>

using namespace lorafleet;

class TestFleetImport : public QObject {
    Q_OBJECT
private:
    QTemporaryDir m_root;
    QString fleetDir() const { return m_root.filePath("fleet"); }
    QString brokenDir() const { return m_root.filePath("broken-truncated"); }

private slots:
    void initTestCase() {
        test::isolateSettings();
        QVERIFY(m_root.isValid());
        test::writeTinyFleet(fleetDir(), 20);
        test::writeTruncatedCopy(fleetDir() + "/adapter-0000", brokenDir());
    }

    void importsFleetAndReportsTheBrokenFolder() {
        ui::Session session;
        ui::FleetModel model(session.store());
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        session.importPaths({m_root.path()}); // searched recursively: fleet/adapter-* and broken-truncated
        QVERIFY(session.isBusy());
        QVERIFY(test::waitForImport(session));

        QCOMPARE(session.store()->size(), 20);
        QCOMPARE(model.rowCount(), 20);
        QCOMPARE(session.store()->problems().size(), 1);
        const ui::ImportProblem problem = session.store()->problems().front();
        QCOMPARE(problem.path, QDir::cleanPath(brokenDir()));
        QVERIFY(!problem.reason.isEmpty());
        QVERIFY2(!problem.reason.contains('\n'), qPrintable(problem.reason));
        QVERIFY2(problem.reason.startsWith("adapter_model.safetensors: "), qPrintable(problem.reason));

        const ui::ImportReport& report = session.importer()->lastReport();
        QCOMPARE(report.found, 21);
        QCOMPARE(report.added, 20);
        QCOMPARE(report.problems, 1);
        QVERIFY(!report.cancelled);
        QVERIFY(report.summary().startsWith("Imported 20 adapters, 1 problem"));

        // The rows are the adapters the compressor will get, loaded and summarised.
        const auto adapters = session.store()->adapters();
        QCOMPARE(int(adapters.size()), 20);
        for (const auto& a : adapters) {
            QVERIFY(a);
            QCOMPARE(int(a->modules.size()), 2 * 2); // q_proj, v_proj x 2 layers
        }
        const ui::AdapterSummary& s = session.store()->entry(0).summary;
        QCOMPARE(s.maxRank, 4);
        QCOMPARE(s.layers, 2);
        QCOMPARE(s.modules, QStringList({"q_proj", "v_proj"}));
        QVERIFY(s.fileBytes > s.weightBytes);
        // The workspace follows the fleet: 20 folders, unsaved.
        QCOMPARE(session.workspace()->data().adapterDirs.size(), 20);
        QVERIFY(session.workspace()->isDirty());

        // Importing the same folders again adds nothing; the broken one stays listed once.
        session.importPaths({fleetDir(), brokenDir()});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 20);
        QCOMPARE(session.importer()->lastReport().duplicates, 20);
        QCOMPARE(session.store()->problems().size(), 1);
    }

    void queuedImportsRunOneAfterAnother() {
        ui::Session session;
        session.importPaths({fleetDir() + "/adapter-0001"});
        session.importPaths({fleetDir() + "/adapter-0001/adapter_config.json", fleetDir() + "/adapter-0002"});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 2);
        QCOMPARE(session.importer()->lastReport().duplicates, 1);
    }

    void missingFolderIsAProblem() {
        ui::Session session;
        session.importPaths({m_root.filePath("does-not-exist")});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 0);
        QCOMPARE(session.store()->problems().size(), 1);
        QVERIFY(session.store()->problems().front().reason.contains("no such file"));
    }

    void cancelStopsCleanly() {
        ui::Session session;
        ui::FleetModel model(session.store());
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        session.importPaths({fleetDir()});
        session.importer()->cancel();
        QVERIFY(test::waitForImport(session));
        QVERIFY(session.store()->size() <= 20);
        QCOMPARE(model.rowCount(), session.store()->size());
        if (session.importer()->lastReport().cancelled)
            QVERIFY(session.importer()->lastReport().summary().startsWith("Import cancelled"));
        // Aborting (what New / Open do) while a job runs joins it and discards its results.
        session.importPaths({fleetDir()});
        session.newWorkspace();
        QVERIFY(!session.isBusy());
        QCOMPARE(session.store()->size(), 0);
        QTest::qWait(100); // no late delivery from the aborted job
        QCOMPARE(session.store()->size(), 0);
    }

    void baseModelIsEnforced() {
        LORAFLEET_REQUIRE_FIXTURES();
        const QString tinyllama = QString::fromStdString(
            (test::fixtures_dir() / "adapters" / "tinyllama-1.1b-chat-arona-ckpt75").string());
        ui::Session session;
        QString error;
        QVERIFY(session.setBaseModel("tinystories-656k", &error));
        QVERIFY(!session.setBaseModel("no-such-model", &error));
        QVERIFY(!error.isEmpty());
        QCOMPARE(session.workspace()->data().baseModel, QStringLiteral("tinystories-656k"));
        session.importPaths({tinyllama, fleetDir() + "/adapter-0003"});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 1);
        QCOMPARE(session.store()->problems().size(), 1);
        QVERIFY2(!session.store()->problems().front().reason.contains('\n'),
                 qPrintable(session.store()->problems().front().reason));
        // Without a base model the same adapter loads.
        QVERIFY(session.setBaseModel(QString(), &error));
        session.importPaths({tinyllama});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 2);
    }

    void dropOnWindowImports() {
        ui::MainWindow window;
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QMimeData mime;
        mime.setUrls({QUrl::fromLocalFile(fleetDir() + "/adapter-0004"),
                      QUrl::fromLocalFile(fleetDir() + "/adapter-0005"), QUrl("https://example.com/x")});
        const QPoint pos = window.rect().center();
        QDragEnterEvent enter(pos, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(&window, &enter);
        QVERIFY(enter.isAccepted());
        QDropEvent drop(QPointF(pos), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(&window, &drop);
        QVERIFY(test::waitForImport(*window.session()));
        QCOMPARE(window.session()->store()->size(), 2);
        QTRY_VERIFY(window.isWindowModified());
    }

    void detailsNormsMatchDenseProduct() {
        ui::Session session;
        session.importPaths({fleetDir() + "/adapter-0007"});
        QVERIFY(test::waitForImport(session));
        QCOMPARE(session.store()->size(), 1);
        const auto adapter = session.store()->adapters().front();
        for (const auto& m : adapter->modules) {
            const io::lora_factors f = m.factors_f32();
            double dense = 0.0;
            for (std::int64_t i = 0; i < f.d_out; ++i)
                for (std::int64_t j = 0; j < f.d_in; ++j) {
                    double v = 0.0;
                    for (int k = 0; k < f.rank; ++k)
                        v += double(f.b[std::size_t(i * f.rank + k)]) *
                             double(f.a[std::size_t(k * f.d_in + j)]);
                    dense += v * v;
                }
            const double factored = analysis::update_frobenius_norm(m);
            QVERIFY(factored > 0);
            QVERIFY2(std::abs(factored - std::sqrt(dense)) <= 1e-9 * std::sqrt(dense) + 1e-12,
                     qPrintable(QStringLiteral("%1 vs %2").arg(factored).arg(std::sqrt(dense))));
        }

        ui::ModuleTableModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setAdapter(adapter);
        QCOMPARE(model.rowCount(), int(adapter->modules.size()));
        QCOMPARE(model.index(0, ui::ModuleTableModel::Norm).data().toString(), QStringLiteral("\u2026"));
        model.setNorms(analysis::update_frobenius_norms(*adapter));
        QVERIFY(model.index(0, ui::ModuleTableModel::Norm).data(ui::ModuleTableModel::SortRole).toDouble() >
                0);
        QCOMPARE(model.index(0, ui::ModuleTableModel::Shape).data().toString(),
                 QStringLiteral("128 \u00d7 128"));
        QVERIFY(std::isfinite(model.totalNorm()));
        model.setAdapter(nullptr);
        QCOMPARE(model.rowCount(), 0);
    }
};

QTEST_MAIN(TestFleetImport)
#include "test_fleet_import.moc"
