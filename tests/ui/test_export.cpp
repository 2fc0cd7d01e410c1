// Export from the console (ui/export): through the ExportController (the same calls the File > Export
// menu makes, without dialogs) on a random bank with every corner the format has (a module an adapter
// lacks, an empty basis): the bank folder is accepted by read_bank and equals the session's bank (F16
// storage tolerance), and does not become the workspace's bank path; rebuilt PEFT folders (all, or a
// selection) load with load_peft_adapter and their dense update equals the bank's reconstruction; the CSV and
// JSON reports parse back to exactly the bank's errors (NaN where a module is missing). Failures (no bank, an
// unknown adapter name) leave nothing behind.
#include "engine/bank/bank_format.hpp"
#include "engine/bank/compressed_bank.hpp"
#include "engine/io/peft_adapter.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/ui/ui_test_support.hpp"
#include "ui/export/error_report.hpp"
#include "ui/export/export_controller.hpp"
#include "ui/workspace/session.hpp"
#include "ui/workspace/workspace.hpp"

#include <QFile>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

// Waits for the controller's finished(ok, message); returns {ok, message}.
std::pair<bool, QString> waitExport(ui::ExportController& exporter) {
    QSignalSpy spy(&exporter, &ui::ExportController::finished);
    if (!spy.wait(60000)) return {false, QStringLiteral("timeout")};
    return {spy.at(0).at(0).toBool(), spy.at(0).at(1).toString()};
}

std::vector<double> denseOf(const io::lora_module& mod) {
    const auto f = mod.factors_f32(); // b already scaled
    std::vector<double> out(std::size_t(f.d_out * f.d_in), 0.0);
    for (std::int64_t o = 0; o < f.d_out; ++o)
        for (int k = 0; k < f.rank; ++k)
            for (std::int64_t i = 0; i < f.d_in; ++i)
                out[std::size_t(o * f.d_in + i)] +=
                    double(f.b[std::size_t(o * f.rank + k)]) * double(f.a[std::size_t(k * f.d_in + i)]);
    return out;
}

std::vector<std::string> splitCsvLine(const std::string& line) {
    std::vector<std::string> cells;
    std::string cell;
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                cell += '"';
                ++i;
            } else if (c == '"') {
                quoted = false;
            } else {
                cell += c;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            cells.push_back(cell);
            cell.clear();
        } else {
            cell += c;
        }
    }
    cells.push_back(cell);
    return cells;
}

std::string readText(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

} // namespace

class TestExport : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { lorafleet::test::isolateSettings(); }

    void nothingWithoutBank() {
        ui::Session session;
        ui::ExportController exporter(&session);
        QTemporaryDir tmp;
        QString error;
        QVERIFY(!exporter.exportBank(tmp.filePath("bank"), false, &error));
        QVERIFY(error.contains("no bank"));
        QVERIFY(!exporter.exportReport(tmp.filePath("r.csv"), &error));
        QVERIFY(!exporter.exportPeft(tmp.filePath("peft"), {}, false, &error));
        QVERIFY(!QFileInfo::exists(tmp.filePath("bank")));
        QVERIFY(!QFileInfo::exists(tmp.filePath("r.csv")));
    }

    void bankFolderReadsBack_data() {
        QTest::addColumn<int>("kind");
        QTest::newRow("jd-full") << int(compress::jd_method::full);
        QTest::newRow("jd-diag") << int(compress::jd_method::diag);
    }
    void bankFolderReadsBack() {
        QFETCH(int, kind);
        QTemporaryDir tmp;
        ui::Session session;
        auto b = std::make_shared<const bank::compressed_bank>(
            test::make_random_bank(compress::jd_method(kind), 21));
        session.setBank(b, /*unsaved=*/true);
        QVERIFY(session.isBankUnsaved());
        ui::ExportController exporter(&session);
        const QString dir = tmp.filePath("out.bank");
        QVERIFY(exporter.exportBank(dir, false, nullptr));
        const auto [ok, message] = waitExport(exporter);
        QVERIFY2(ok, qPrintable(message));
        const auto read = bank::read_bank(dir.toStdString()); // checksums verified
        QCOMPARE(read.kind, b->kind);
        QCOMPARE(read.rank, b->rank);
        QCOMPARE(read.clusters, b->clusters);
        QCOMPARE(read.adapters.size(), b->adapters.size());
        for (std::size_t i = 0; i < b->adapters.size(); ++i) {
            QCOMPARE(read.adapters[i].name, b->adapters[i].name);
            QCOMPARE(read.adapters[i].cluster, b->adapters[i].cluster);
            for (std::size_t m = 0; m < b->modules.size(); ++m) {
                const double want = b->adapters[i].errors[m], got = read.adapters[i].errors[m];
                QVERIFY(std::isnan(want) ? std::isnan(got) : got == want);
                if (!b->adapters[i].has_module(m)) continue;
                const auto dw = b->dense_update(m, i), dr = read.dense_update(m, i);
                double err = 0, norm = 0;
                for (std::size_t k = 0; k < dw.size(); ++k) {
                    err += double(dw[k] - dr[k]) * double(dw[k] - dr[k]);
                    norm += double(dw[k]) * dw[k];
                }
                QVERIFY2(err <= 1e-5 * norm, "F16 storage is accurate to about 1e-3 relative");
            }
        }
        // An export is a copy: the workspace's bank stays its own (unsaved, no path), so a later Save
        // writes NAME.bank beside the workspace and never this folder.
        QVERIFY(session.isBankUnsaved());
        QVERIFY(session.workspace()->data().bankPath.isEmpty());

        // A folder that is not a bank is never replaced, even when asked to overwrite.
        QVERIFY(QDir(tmp.path()).mkpath("notabank"));
        QFile keep(tmp.filePath("notabank/keep.txt"));
        QVERIFY(keep.open(QIODevice::WriteOnly));
        keep.write("x");
        keep.close();
        QVERIFY(exporter.exportBank(tmp.filePath("notabank"), true, nullptr));
        QVERIFY(!waitExport(exporter).first);
        QVERIFY(QFileInfo::exists(tmp.filePath("notabank/keep.txt")));
    }

    void peftFoldersEqualReconstruction() {
        QTemporaryDir tmp;
        ui::Session session;
        auto b = std::make_shared<const bank::compressed_bank>(
            test::make_random_bank(compress::jd_method::full, 5));
        session.setBank(b);
        ui::ExportController exporter(&session);
        QVERIFY(exporter.exportPeft(tmp.filePath("all"), {}, false, nullptr));
        auto [ok, message] = waitExport(exporter);
        QVERIFY2(ok, qPrintable(message));
        for (std::size_t i = 0; i < b->adapters.size(); ++i) {
            const auto loaded =
                io::load_peft_adapter(fs::path(tmp.filePath("all").toStdString()) / b->adapters[i].name);
            std::size_t present = 0;
            for (std::size_t m = 0; m < b->modules.size(); ++m) {
                const auto* mod = loaded.find(b->modules[m].path);
                QCOMPARE(mod != nullptr, b->adapters[i].has_module(m));
                if (!mod) continue;
                ++present;
                const auto got = denseOf(*mod);
                const auto want = b->dense_update(m, i);
                double err = 0, norm = 0;
                for (std::size_t k = 0; k < want.size(); ++k) {
                    err += (got[k] - want[k]) * (got[k] - want[k]);
                    norm += double(want[k]) * want[k];
                }
                QVERIFY2(err <= 1e-10 * norm, qPrintable(QString("relative error %1").arg(err / norm)));
            }
            QCOMPARE(loaded.modules.size(), present);
        }

        // Only the selected adapters.
        const QStringList some{QString::fromStdString(b->adapters[1].name),
                               QString::fromStdString(b->adapters[4].name)};
        QVERIFY(exporter.exportPeft(tmp.filePath("some"), some, false, nullptr));
        std::tie(ok, message) = waitExport(exporter);
        QVERIFY2(ok, qPrintable(message));
        QStringList written = QDir(tmp.filePath("some")).entryList(QDir::Dirs | QDir::NoDotAndDotDot);
        written.sort();
        QStringList expected = some;
        expected.sort();
        QCOMPARE(written, expected);

        // An unknown name fails before anything is written.
        QVERIFY(exporter.exportPeft(tmp.filePath("bad"), {"no-such-adapter"}, false, nullptr));
        std::tie(ok, message) = waitExport(exporter);
        QVERIFY(!ok);
        QVERIFY2(message.contains("no-such-adapter"), qPrintable(message));
        QVERIFY(QDir(tmp.filePath("bad")).entryList(QDir::Dirs | QDir::NoDotAndDotDot).isEmpty());
    }

    void reportsEqualBankErrors() {
        QTemporaryDir tmp;
        ui::Session session;
        auto b = std::make_shared<const bank::compressed_bank>(
            test::make_random_bank(compress::jd_method::diag, 9));
        session.setBank(b);
        ui::ExportController exporter(&session);
        const QString csv = tmp.filePath("errors.csv"), json = tmp.filePath("errors.JSON");
        for (const QString& path : {csv, json}) {
            QVERIFY(exporter.exportReport(path, nullptr));
            const auto [ok, message] = waitExport(exporter);
            QVERIFY2(ok, qPrintable(message));
        }
        // CSV: header, then one row per adapter; every value parses back to the bank's double exactly.
        std::istringstream lines(readText(csv.toStdString()));
        std::string line;
        QVERIFY(std::getline(lines, line));
        const auto header = splitCsvLine(line);
        QCOMPARE(header.size(), 3 + b->modules.size());
        QCOMPARE(header[0], std::string("name"));
        for (std::size_t m = 0; m < b->modules.size(); ++m)
            QCOMPARE(header[3 + m], b->modules[m].path);
        int nanCells = 0;
        for (const auto& a : b->adapters) {
            QVERIFY(std::getline(lines, line));
            const auto cells = splitCsvLine(line);
            QCOMPARE(cells.size(), header.size());
            QCOMPARE(cells[0], a.name);
            QCOMPARE(std::stoi(cells[1]), a.cluster);
            QCOMPARE(std::strtod(cells[2].c_str(), nullptr), a.mean_error());
            for (std::size_t m = 0; m < b->modules.size(); ++m) {
                if (std::isnan(a.errors[m])) {
                    QVERIFY(cells[3 + m].empty());
                    ++nanCells;
                } else {
                    QCOMPARE(std::strtod(cells[3 + m].c_str(), nullptr), a.errors[m]);
                }
            }
        }
        QVERIFY(!std::getline(lines, line) || line.empty());
        QVERIFY(nanCells > 0); // the random bank has an adapter without a module: the corner is covered

        // JSON (suffix in any case).
        const auto j = nlohmann::json::parse(readText(json.toStdString()));
        QCOMPARE(j.at("format").get<std::string>(), std::string("lorafleet-error-report"));
        QCOMPARE(j.at("clusters").get<int>(), b->clusters);
        QCOMPARE(j.at("mean_error").get<double>(), b->mean_error());
        QCOMPARE(j.at("adapters").size(), b->adapters.size());
        for (std::size_t i = 0; i < b->adapters.size(); ++i) {
            const auto& ja = j.at("adapters")[i];
            const auto& a = b->adapters[i];
            QCOMPARE(ja.at("name").get<std::string>(), a.name);
            QCOMPARE(ja.at("cluster").get<int>(), a.cluster);
            QCOMPARE(ja.at("mean_error").get<double>(), a.mean_error());
            for (std::size_t m = 0; m < b->modules.size(); ++m) {
                const auto& v = ja.at("errors").at(b->modules[m].path);
                if (std::isnan(a.errors[m]))
                    QVERIFY(v.is_null());
                else
                    QCOMPARE(v.get<double>(), a.errors[m]);
            }
        }
        // Dialog-free functions agree with the files.
        QCOMPARE(readText(csv.toStdString()), ui::errorReportCsv(*b));
        QVERIFY(ui::reportFormatFor("x.Json") == ui::ReportFormat::Json);
        QVERIFY(ui::reportFormatFor("x.txt") == ui::ReportFormat::Csv);
    }
};

QTEST_MAIN(TestExport)
#include "test_export.moc"
