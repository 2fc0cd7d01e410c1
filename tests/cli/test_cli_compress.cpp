// compress / bank-info / export-peft / add through the real CLI on synthetic fleets with planted
// structure: the planted groups are recovered and reconstructed to fp32 precision, the reported errors
// equal errors measured densely on the rebuilt PEFT files, and bad input gets a one-line error.
#include "engine/bank/bank_format.hpp"
#include "engine/io/peft_adapter.hpp"
#include "engine/synth/synthetic_fleet.hpp"
#include "tests/support/cli_runner.hpp"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <fstream>
#include <map>
#include <set>

using lorafleet::test::run_cli;
namespace fs = std::filesystem;
using namespace lorafleet;

namespace {

QJsonObject parse_object(const QString& text) {
    QJsonParseError err{};
    const auto doc = QJsonDocument::fromJson(text.toUtf8(), &err);
    if (err.error != QJsonParseError::NoError) qWarning() << "bad JSON:" << text.left(400);
    return doc.object();
}

// Dense s·B·A of a module, [d_out, d_in] in double.
std::vector<double> dense_of(const io::lora_module& m) {
    const auto f = m.factors_f32();
    std::vector<double> out(std::size_t(f.d_out * f.d_in), 0.0);
    for (std::int64_t i = 0; i < f.d_out; ++i)
        for (int k = 0; k < f.rank; ++k) {
            const double b = f.b[std::size_t(i * f.rank + k)];
            for (std::int64_t j = 0; j < f.d_in; ++j)
                out[std::size_t(i * f.d_in + j)] += b * f.a[std::size_t(k * f.d_in + j)];
        }
    return out;
}

// Mean over modules of ||dW_orig - dW_rebuilt||² / ||dW_orig||², measured densely.
double measured_error(const io::peft_adapter& orig, const io::peft_adapter& rebuilt) {
    double sum = 0;
    for (const auto& m : orig.modules) {
        const auto* r = rebuilt.find(m.path);
        if (!r) return -1;
        const auto a = dense_of(m), b = dense_of(*r);
        double num = 0, den = 0;
        for (std::size_t k = 0; k < a.size(); ++k) {
            num += (a[k] - b[k]) * (a[k] - b[k]);
            den += a[k] * a[k];
        }
        sum += num / den;
    }
    return sum / double(orig.modules.size());
}

synth::synth_options planted(const fs::path& out, int n, int k, double noise) {
    synth::synth_options o;
    o.out_dir = out;
    o.adapters = n;
    o.geometry = *io::geometry_preset("tinystories-656k");
    o.rank = 4;
    o.clusters = k;
    o.noise = noise;
    o.dtype = io::dtype::F32;
    o.seed = 42;
    return o;
}

} // namespace

class TestCliCompress : public QObject {
    Q_OBJECT
private slots:
    void plantedClustersAreRecoveredExactly() {
        QTemporaryDir tmp;
        const fs::path fleet = tmp.filePath("fleet").toStdString();
        const auto opt = planted(fleet, 24, 3, 0.0);
        const auto plan = synth::write_synthetic_fleet(opt, {}).plan;
        const QString bank = tmp.filePath("bank");
        const auto r = run_cli({"compress", QString::fromStdString(fleet.string()), "--rank", "4",
                                "--clusters", "3", "--dtype", "f32", "--out", bank, "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto j = parse_object(r.out);
        QCOMPARE(j["clusters"].toInt(), 3);
        QCOMPARE(j["rank"].toInt(), 4);
        QCOMPARE(j["method"].toString(), QString("jd-full"));
        QVERIFY(j["seconds"].toDouble() > 0);
        const auto adapters = j["adapters"].toArray();
        QCOMPARE(adapters.size(), 24);
        // Same partition as the planted groups, up to relabeling: a bijection group <-> cluster.
        std::map<int, int> group_to_cluster, cluster_to_group;
        for (int i = 0; i < 24; ++i) {
            const auto a = adapters[i].toObject();
            QCOMPARE(a["name"].toString().toStdString(), synth::adapter_folder_name(i, 24));
            const int c = a["cluster"].toInt(), g = plan.group[std::size_t(i)];
            QCOMPARE(group_to_cluster.emplace(g, c).first->second, c);
            QCOMPARE(cluster_to_group.emplace(c, g).first->second, g);
            QVERIFY2(a["error"].toDouble() < 1e-9, qPrintable(QString::number(a["error"].toDouble())));
        }
        // Sizes: original = every A and B in f32; compressed = what the bank's files hold.
        std::uint64_t original = 0;
        for (int i = 0; i < 24; ++i)
            original += io::load_peft_adapter(fleet / synth::adapter_folder_name(i, 24)).weight_bytes();
        QCOMPARE(std::uint64_t(j["bytes_original"].toDouble()), original);
        QCOMPARE(std::uint64_t(j["bytes_compressed"].toDouble()),
                 bank::read_bank_files_info(bank.toStdString()).data_bytes);
    }
    void reportedErrorsEqualMeasuredErrors_data() {
        QTest::addColumn<QString>("method");
        QTest::newRow("jd-full") << "jd-full";
        QTest::newRow("jd-diag") << "jd-diag";
    }
    void reportedErrorsEqualMeasuredErrors() {
        QFETCH(QString, method);
        QTemporaryDir tmp;
        const fs::path fleet = tmp.filePath("fleet").toStdString();
        synth::write_synthetic_fleet(planted(fleet, 12, 2, 0.3), {});
        const QString bank = tmp.filePath("bank"), out = tmp.filePath("peft");
        auto r = run_cli({"compress", QString::fromStdString(fleet.string()), "--method", method, "--rank",
                          "6", "--clusters", "2", "--dtype", "f32", "--out", bank, "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto adapters = parse_object(r.out)["adapters"].toArray();
        r = run_cli({"export-peft", bank, "--out", out});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        for (const auto& v : adapters) {
            const auto a = v.toObject();
            const auto name = a["name"].toString().toStdString();
            const auto orig = io::load_peft_adapter(fleet / name);
            const auto rebuilt = io::load_peft_adapter(fs::path(out.toStdString()) / name);
            const double reported = a["error"].toDouble(), measured = measured_error(orig, rebuilt);
            QVERIFY(reported > 1e-4); // noise 0.3 at rank 6: a real, non-trivial error
            QVERIFY2(
                std::abs(reported - measured) <= 1e-4 * reported + 1e-7,
                qPrintable(
                    QString("%1: reported %2 measured %3").arg(name.c_str()).arg(reported).arg(measured)));
        }
        // bank-info agrees with compress.
        r = run_cli({"bank-info", bank, "--json"});
        QCOMPARE(r.exit_code, 0);
        const auto info = parse_object(r.out);
        QCOMPARE(info["method"].toString(), method);
        QCOMPARE(info["adapters"].toArray().size(), 12);
        QCOMPARE(info["clusters"].toInt(), 2);
    }
    void addProjectsOntoTheRightCluster() {
        QTemporaryDir tmp;
        const fs::path fleet = tmp.filePath("fleet").toStdString();
        // 13 adapters generated; the first 12 are compressed, the 13th is added afterwards.
        const auto plan = synth::write_synthetic_fleet(planted(fleet, 13, 3, 0.0), {}).plan;
        const fs::path late = tmp.filePath("late").toStdString();
        fs::create_directories(late);
        fs::rename(fleet / synth::adapter_folder_name(12, 13), late / "newcomer");
        const QString bank = tmp.filePath("bank");
        auto r = run_cli({"compress", QString::fromStdString(fleet.string()), "--rank", "4", "--clusters",
                          "3", "--dtype", "f32", "--out", bank, "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto adapters = parse_object(r.out)["adapters"].toArray();
        int expected_cluster = -1;
        for (int i = 0; i < 12; ++i)
            if (plan.group[std::size_t(i)] == plan.group[12])
                expected_cluster = adapters[i].toObject()["cluster"].toInt();
        QVERIFY(expected_cluster >= 0);
        r = run_cli({"add", bank, QString::fromStdString((late / "newcomer").string()), "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto added = parse_object(r.out)["added"].toArray();
        QCOMPARE(added.size(), 1);
        QCOMPARE(added[0].toObject()["cluster"].toInt(), expected_cluster);
        QVERIFY(added[0].toObject()["error"].toDouble() < 1e-9);
        const auto b = bank::read_bank(bank.toStdString());
        QCOMPARE(b.adapters.size(), std::size_t(13));
        QCOMPARE(b.adapters.back().name, std::string("newcomer"));
        // Adding the same name again is refused and leaves the bank as it was.
        r = run_cli({"add", bank, QString::fromStdString((late / "newcomer").string())});
        QCOMPARE(r.exit_code, 1);
        QVERIFY(r.err.contains("already has an adapter named 'newcomer'"));
        QCOMPARE(bank::read_bank(bank.toStdString()).adapters.size(), std::size_t(13));
    }
    void mixedGeometriesAreNamed() {
        QTemporaryDir tmp;
        const fs::path a = tmp.filePath("a").toStdString(), b = tmp.filePath("b").toStdString();
        synth::write_synthetic_fleet(planted(a, 2, 1, 0.1), {});
        auto other = planted(b, 2, 1, 0.1);
        other.geometry = *io::geometry_preset("tinyllama-1.1b");
        other.layers = 1;
        synth::write_synthetic_fleet(other, {});
        for (int i = 0; i < 2; ++i) // unique names, so the geometry is what fails
            fs::rename(b / synth::adapter_folder_name(i, 2), b / ("tinyllama-" + std::to_string(i)));
        const auto r = run_cli({"compress", QString::fromStdString(a.string()),
                                QString::fromStdString(b.string()), "--out", tmp.filePath("bank")});
        QCOMPARE(r.exit_code, 1);
        QCOMPARE(r.err.trimmed().count('\n'), 0);
        QVERIFY2(r.err.contains("different base models") && r.err.contains("adapter-0"), qPrintable(r.err));
        QVERIFY(!fs::exists(tmp.filePath("bank").toStdString()));
    }
    void badInput() {
        QTemporaryDir tmp;
        const fs::path fleet = tmp.filePath("fleet").toStdString();
        synth::write_synthetic_fleet(planted(fleet, 3, 1, 0.1), {});
        const QString f = QString::fromStdString(fleet.string());
        QCOMPARE(run_cli({"compress", f, "--method", "svd", "--out", tmp.filePath("x")}).exit_code, 2);
        QCOMPARE(run_cli({"compress", f, "--rank", "0", "--out", tmp.filePath("x")}).exit_code, 2);
        QCOMPARE(run_cli({"compress", f}).exit_code, 2); // --out missing
        QCOMPARE(run_cli({"compress", tmp.filePath("missing"), "--out", tmp.filePath("x")}).exit_code, 1);
        // rank above a module's smaller side (k/v of tinystories are 64 x 128)
        const auto r = run_cli({"compress", f, "--rank", "100", "--out", tmp.filePath("x")});
        QCOMPARE(r.exit_code, 1);
        // A broken adapter is named on one line and left out; with --strict the run fails, nothing written.
        fs::resize_file(fleet / synth::adapter_folder_name(1, 3) / "adapter_model.safetensors", 50);
        const QString broken_name = QString::fromStdString(synth::adapter_folder_name(1, 3));
        const auto strict = run_cli({"compress", f, "--strict", "--out", tmp.filePath("x")});
        QCOMPARE(strict.exit_code, 1);
        QVERIFY(strict.err.contains(broken_name));
        QVERIFY(!fs::exists(tmp.filePath("x").toStdString()));
        const auto skipped = run_cli({"compress", f, "--rank", "4", "--out", tmp.filePath("x")});
        QVERIFY2(skipped.exit_code == 0, qPrintable(skipped.err));
        QCOMPARE(skipped.err.count("rejected adapter: "), 1);
        QVERIFY(skipped.err.contains(broken_name));
        QCOMPARE(bank::read_bank(tmp.filePath("x").toStdString()).adapters.size(), std::size_t(2));
        // bank-info on something that is not a bank
        const auto info = run_cli({"bank-info", f});
        QCOMPARE(info.exit_code, 1);
        QVERIFY(info.err.contains("not a bank"));
    }
};

QTEST_APPLESS_MAIN(TestCliCompress)
#include "test_cli_compress.moc"
