// Crash consistency of every bank / export writer, through the real CLI: `compress --overwrite`, `add`
// and `export-peft --overwrite` are SIGKILLed at seeded random points (dozens of runs, bounded to about
// 60 s); after every kill the bank passes the full validation and is exactly the old or the new one,
// and the export is exactly the old or the new set of complete adapters (240 runs, ~20 s here). The staging
// folders the killed runs leave are removed by the next write.
#include "engine/bank/bank_format.hpp"
#include "engine/bank/bank_validation.hpp"
#include "engine/io/peft_adapter.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QElapsedTimer>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <chrono>
#include <random>
#include <set>
#include <thread>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

// The manifest and file list only: no checksums, no tensors.
bank::bank_read_options manifest_only() {
    bank::bank_read_options o;
    o.verify_checksums = false;
    o.load_tensors = false;
    return o;
}

QString q(const fs::path& p) {
    return QString::fromStdString(p.string());
}

test::crafted_adapter adapter(int seed) {
    auto spec =
        test::crafted_llama_adapter(*io::geometry_preset("tinystories-656k"), {"q_proj", "v_proj"}, 4, 8);
    for (auto& m : spec.modules) {
        m.a_values.resize(std::size_t(m.rank * m.d_in));
        m.b_values.resize(std::size_t(m.d_out * m.rank));
        std::mt19937 rng(unsigned(seed) * 7919u + unsigned(m.d_out));
        std::uniform_real_distribution<float> u(-0.5f, 0.5f);
        for (auto& x : m.a_values)
            x = u(rng);
        for (auto& x : m.b_values)
            x = u(rng);
    }
    return spec;
}

// Runs the CLI; kills it with SIGKILL after `kill_after_ms` (< 0: never). Returns true when it was
// killed before it finished.
bool run_and_maybe_kill(const QStringList& args, int kill_after_ms, int* exit_code = nullptr) {
    QProcess p;
    p.start(QString::fromStdString(test::cli_path().string()), args);
    if (!p.waitForStarted(10000)) return false;
    bool killed = false;
    if (kill_after_ms >= 0 && !p.waitForFinished(kill_after_ms)) {
        p.kill(); // SIGKILL
        killed = true;
    }
    p.waitForFinished(120000);
    if (exit_code) *exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    return killed && p.exitStatus() == QProcess::CrashExit;
}

std::set<std::string> bank_names(const fs::path& bank) {
    std::set<std::string> out;
    for (const auto& a : bank::read_bank(bank, manifest_only()).adapters)
        out.insert(a.name);
    return out;
}

// The adapter folders of an export, each checked to load completely.
std::set<std::string> export_names(const fs::path& out) {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(out)) {
        io::load_peft_adapter(e.path()); // throws on a partial adapter
        names.insert(e.path().filename().string());
    }
    return names;
}

std::size_t staging_leftovers(const fs::path& parent) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(parent))
        n += e.path().filename().string().find(".tmp-") != std::string::npos;
    return n;
}

} // namespace

class TestCliCrashConsistency : public QObject {
    Q_OBJECT
private slots:
    void killedWritersNeverLoseTheBankOrTheExport() {
        QTemporaryDir tmp;
        const fs::path root = tmp.path().toStdString();
        const fs::path fleet_a = root / "fleet-a", fleet_b = root / "fleet-b";
        std::set<std::string> names_a, names_b;
        for (int i = 0; i < 3; ++i) {
            test::write_crafted_adapter(fleet_a / ("a-" + std::to_string(i)), adapter(i));
            names_a.insert("a-" + std::to_string(i));
        }
        for (int i = 0; i < 4; ++i) {
            test::write_crafted_adapter(fleet_b / ("b-" + std::to_string(i)), adapter(10 + i));
            names_b.insert("b-" + std::to_string(i));
        }
        const fs::path bank = root / "bank", out = root / "export";
        auto compress_args = [&](const fs::path& fleet) {
            return QStringList{"compress",  q(fleet), "--rank",      "4",     "--clusters", "2",
                               "--threads", "1",      "--overwrite", "--out", q(bank)};
        };
        const QStringList export_args{"export-peft", q(bank), "--out", q(out), "--overwrite"};
        int code = -1;
        run_and_maybe_kill(compress_args(fleet_a), -1, &code);
        QCOMPARE(code, 0);
        run_and_maybe_kill(export_args, -1, &code);
        QCOMPARE(code, 0);

        // How long each writer takes unkilled, so the kills spread over its whole run.
        auto timed = [&](const QStringList& args) {
            QElapsedTimer t;
            t.start();
            int rc = -1;
            run_and_maybe_kill(args, -1, &rc);
            if (rc != 0) qWarning() << "calibration run failed:" << args;
            return std::max<qint64>(20, t.elapsed());
        };
        int late = 0;
        auto add_args = [&](int i) {
            const fs::path dir = root / "late" / ("late-" + std::to_string(i));
            if (!fs::exists(dir)) test::write_crafted_adapter(dir, adapter(100 + i));
            return QStringList{"add", q(bank), q(dir), "--threads", "1"};
        };
        const qint64 t_compress = timed(compress_args(fleet_b));
        const qint64 t_add = timed(add_args(late++));
        const qint64 t_export = timed(export_args);
        qInfo() << "unkilled ms: compress" << t_compress << "add" << t_add << "export" << t_export;

        std::mt19937 rng(20261204);
        QElapsedTimer clock;
        clock.start();
        int runs = 0, killed = 0;
        bool use_b = false;
        while (runs < 240 && clock.elapsed() < 60000) {
            ++runs;
            const int op = int(rng() % 3);
            const auto bank_before = bank_names(bank);
            const auto export_before = export_names(out);
            std::set<std::string> bank_after = bank_before, export_after = export_before;
            QStringList args;
            qint64 span = 0;
            if (op == 0) {
                use_b = !use_b;
                args = compress_args(use_b ? fleet_b : fleet_a);
                bank_after = use_b ? names_b : names_a;
                span = t_compress;
            } else if (op == 1) {
                const int i = late++;
                args = add_args(i);
                bank_after.insert("late-" + std::to_string(i));
                span = t_add;
            } else {
                args = export_args;
                export_after = bank_before;
                span = t_export;
            }
            const int delay = int(std::uniform_int_distribution<qint64>(0, span * 5 / 4)(rng));
            int rc = -1;
            killed += run_and_maybe_kill(args, delay, &rc);
            QVERIFY2(rc == 0 || rc == -2,
                     qPrintable(QString("run %1 (op %2) exited %3").arg(runs).arg(op).arg(rc)));

            const auto problems = bank::validate_bank(bank);
            QVERIFY2(problems.empty(),
                     qPrintable(QString("run %1: %2")
                                    .arg(runs)
                                    .arg(QString::fromStdString(problems.empty() ? "" : problems[0]))));
            const auto bank_now = bank_names(bank);
            QVERIFY2(bank_now == bank_before || bank_now == bank_after,
                     qPrintable(QString("run %1: bank neither old nor new").arg(runs)));
            std::set<std::string> export_now;
            try {
                export_now = export_names(out);
            } catch (const std::exception& e) {
                QFAIL(qPrintable(QString("run %1: partial export: %2").arg(runs).arg(e.what())));
            }
            QVERIFY2(export_now == export_before || export_now == export_after,
                     qPrintable(QString("run %1: export neither old nor new").arg(runs)));
        }
        qInfo() << runs << "runs," << killed << "killed mid-way," << clock.elapsed() << "ms";
        QVERIFY(runs >= 24);
        QVERIFY(killed >= runs / 3);

        // The next writes remove what the killed runs left.
        run_and_maybe_kill(compress_args(fleet_a), -1, &code);
        QCOMPARE(code, 0);
        run_and_maybe_kill(export_args, -1, &code);
        QCOMPARE(code, 0);
        QCOMPARE(staging_leftovers(root), std::size_t(0));
        QCOMPARE(export_names(out), names_a);
    }
};

QTEST_APPLESS_MAIN(TestCliCrashConsistency)
#include "test_cli_crash_consistency.moc"
