// Nothing the operator has is lost or silently corrupted, through the real CLI:
//  - compress / add reject adapters whose values overflow float32 after scaling (lora_alpha 1e38, 1e300,
//    weights 3e38, NaN) or whose modules cannot be placed (layer -1, 999999999999, "../../etc/x") with one
//    stderr line naming each, and go on with the good ones; --strict fails the run and writes nothing;
//  - tampered banks (checksums fixed up) are refused by bank-info, add and generate with the same line;
//  - a write that fails half-way (disk full: the LORAFLEET_TEST_FAIL_WRITE_AFTER hook, and a real
//    RLIMIT_FSIZE limit) leaves the previous bank / export exactly as it was and no partial output;
//  - an existing --out is refused before any work.
#include "engine/bank/bank_format.hpp"
#include "engine/bank/bank_validation.hpp"
#include "engine/core/error.hpp"
#include "tests/support/bank_tamper.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/random_bank.hpp"
#include "tests/support/test_paths.hpp"

#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>

using namespace lorafleet;
namespace fs = std::filesystem;

namespace {

struct run_result {
    int exit_code = -1;
    QString out, err;
};

// Runs lorafleet-cli with extra environment variables; `shell_prefix` (e.g. "ulimit -f 4;") runs the
// CLI through bash with that prefix instead.
run_result cli(const QStringList& args, const QStringList& env = {}, const QString& shell_prefix = {}) {
    QProcess p;
    auto e = QProcessEnvironment::systemEnvironment();
    for (const auto& kv : env)
        e.insert(kv.section('=', 0, 0), kv.section('=', 1));
    p.setProcessEnvironment(e);
    const QString exe = QString::fromStdString(test::cli_path().string());
    if (shell_prefix.isEmpty()) {
        p.start(exe, args);
    } else {
        QString cmd = shell_prefix + " exec \"$0\" \"$@\"";
        p.start("/bin/bash", QStringList{"-c", cmd, exe} + args);
    }
    run_result r;
    if (!p.waitForStarted(10000) || !p.waitForFinished(120000)) {
        p.kill();
        p.waitForFinished();
        r.err = "did not run";
        return r;
    }
    r.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    r.out = QString::fromUtf8(p.readAllStandardOutput());
    r.err = QString::fromUtf8(p.readAllStandardError());
    return r;
}

QString q(const fs::path& p) {
    return QString::fromStdString(p.string());
}

io::model_geometry tiny() {
    return *io::geometry_preset("tinystories-656k");
}

// A good adapter on q_proj / v_proj of both layers; `seed` varies its values.
test::crafted_adapter good_adapter(int seed) {
    auto spec = test::crafted_llama_adapter(tiny(), {"q_proj", "v_proj"}, 4, 8);
    for (auto& m : spec.modules) {
        m.a_values.resize(std::size_t(m.rank * m.d_in));
        m.b_values.resize(std::size_t(m.d_out * m.rank));
        std::size_t k = 0;
        for (auto& x : m.a_values)
            x = float(((k++ * 7919u + unsigned(seed) * 104729u) % 1000u) / 1000.0 - 0.5);
        for (auto& x : m.b_values)
            x = float(((k++ * 6151u + unsigned(seed) * 7901u) % 1000u) / 1000.0 - 0.5);
    }
    return spec;
}

std::size_t staging_leftovers(const fs::path& parent) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(parent))
        n += e.path().filename().string().find(".tmp-") != std::string::npos;
    return n;
}

// Every file below `dir` with its bytes: equal snapshots = the same content.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(dir))
        if (e.is_regular_file()) {
            std::ifstream in(e.path(), std::ios::binary);
            out[e.path().lexically_relative(dir).string()] =
                std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
    return out;
}

// The stderr lines that mention `needle`.
int lines_naming(const QString& err, const QString& needle) {
    int n = 0;
    for (const auto& line : err.split('\n'))
        n += line.contains(needle);
    return n;
}

} // namespace

class TestCliBankSafety : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    fs::path root() const { return m_tmp.path().toStdString(); }

    // fleet/good-0..2 and, when asked, the bad ones beside them.
    fs::path make_fleet(const std::string& name, bool with_bad) {
        const fs::path fleet = root() / name;
        for (int i = 0; i < 3; ++i)
            test::write_crafted_adapter(fleet / ("good-" + std::to_string(i)), good_adapter(i));
        if (!with_bad) return fleet;
        auto bad = [&](const std::string& folder, auto&& edit) {
            auto spec = good_adapter(9);
            edit(spec);
            test::write_crafted_adapter(fleet / folder, spec);
        };
        bad("bad-alpha-1e38", [](auto& s) { s.config["lora_alpha"] = 1e38; });
        bad("bad-alpha-1e300", [](auto& s) { s.config["lora_alpha"] = 1e300; });
        bad("bad-weight-3e38", [](auto& s) { s.modules[1].poison_b = 3e38f; });
        bad("bad-weight-nan", [](auto& s) { s.modules[2].poison_a = std::nanf(""); });
        bad("bad-layer-minus-1", [](auto& s) { s.modules[0].path = "model.layers.-1.self_attn.q_proj"; });
        bad("bad-layer-huge",
            [](auto& s) { s.modules[0].path = "model.layers.999999999999.self_attn.q_proj"; });
        bad("bad-path-escape", [](auto& s) { s.modules[0].path = "../../etc/x"; });
        return fleet;
    }
    static QStringList bad_names() {
        return {"bad-alpha-1e38",    "bad-alpha-1e300", "bad-weight-3e38", "bad-weight-nan",
                "bad-layer-minus-1", "bad-layer-huge",  "bad-path-escape"};
    }

private slots:
    void initTestCase() { QVERIFY(m_tmp.isValid()); }

    void badAdaptersRejectedGoodOnesCompressed() {
        const auto fleet = make_fleet("mixed", true);
        const fs::path bank = root() / "mixed-bank";
        auto r = cli({"compress", q(fleet), "--rank", "4", "--dtype", "f32", "--base", "tinystories-656k",
                      "--out", q(bank)});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        for (const auto& name : bad_names())
            QVERIFY2(lines_naming(r.err, name) == 1, qPrintable(name + " in:\n" + r.err));
        QCOMPARE(lines_naming(r.err, "rejected adapter"), int(bad_names().size()));
        const auto b = bank::read_bank(bank);
        std::set<std::string> names;
        for (const auto& a : b.adapters)
            names.insert(a.name);
        QCOMPARE(names, (std::set<std::string>{"good-0", "good-1", "good-2"}));
        QVERIFY(bank::validate_bank(bank).empty());

        // Without --base as well (the layer bound is then the sane one).
        const fs::path bank2 = root() / "mixed-bank-nobase";
        r = cli({"compress", q(fleet), "--rank", "4", "--out", q(bank2)});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QCOMPARE(lines_naming(r.err, "rejected adapter"), int(bad_names().size()));
        QCOMPARE(bank::read_bank(bank2).adapters.size(), std::size_t(3));

        // --strict: the run fails, nothing is written.
        const fs::path strict = root() / "strict-bank";
        r = cli({"compress", q(fleet), "--rank", "4", "--strict", "--out", q(strict)});
        QCOMPARE(r.exit_code, 1);
        for (const auto& name : bad_names())
            QVERIFY2(lines_naming(r.err, name) == 1, qPrintable(name + " in:\n" + r.err));
        QVERIFY(!fs::exists(strict));

        // add: the same rejections; the bank gains only the good one; --strict leaves it untouched.
        const fs::path late = root() / "late";
        test::write_crafted_adapter(late / "good-late", good_adapter(5));
        for (const auto& name : bad_names())
            fs::copy(fleet / name.toStdString(), late / name.toStdString(), fs::copy_options::recursive);
        const auto before = snapshot(bank);
        r = cli({"add", q(bank), q(late), "--strict"});
        QCOMPARE(r.exit_code, 1);
        QCOMPARE(snapshot(bank), before);
        r = cli({"add", q(bank), q(late)});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QCOMPARE(lines_naming(r.err, "rejected adapter"), int(bad_names().size()));
        QCOMPARE(bank::read_bank(bank).adapters.size(), std::size_t(4));
        QVERIFY(bank::validate_bank(bank).empty());
        QCOMPARE(staging_leftovers(root()), std::size_t(0));
    }

    void tamperedBanksRefusedByEveryCommand() {
        const fs::path good = root() / "tamper-good";
        test::model_bank_spec spec;
        spec.modules = {"q_proj", "v_proj"};
        auto b = test::make_model_bank(tiny(), spec);
        for (auto& m : b.modules) // the paths PEFT adapters use, so that `add` can project onto them
            m.path = "model.layers." + std::to_string(m.layer) + ".self_attn." + m.short_name;
        b.base = tiny();
        bank::write_bank(good, b, {io::dtype::F32, false});
        const fs::path adapter = root() / "tamper-adapter" / "newcomer";
        test::write_crafted_adapter(adapter, good_adapter(3));
        const QString model = q(test::demo_model_dir());
        auto generate = [&](const fs::path& bank) {
            return cli({"generate", "--model", model, "--bank", q(bank), "--adapter", "a0", "--prompt",
                        "Once", "--max-tokens", "1", "--device", "cpu"});
        };
        { // the untampered bank passes all three
            const fs::path copy = root() / "tamper-baseline";
            fs::copy(good, copy, fs::copy_options::recursive);
            auto r = cli({"bank-info", q(copy)});
            QVERIFY2(r.exit_code == 0, qPrintable(r.err));
            r = generate(copy);
            QVERIFY2(r.exit_code == 0, qPrintable(r.err));
            r = cli({"add", q(copy), q(adapter)});
            QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        }
        int n = 0;
        for (const auto& c : test::bank_tamper_cases()) {
            const fs::path dir = root() / ("tampered-" + std::to_string(n));
            const fs::path outside = root() / ("tampered-outside-" + std::to_string(n++));
            fs::create_directories(outside);
            fs::copy(good, dir, fs::copy_options::recursive);
            c.apply(dir, outside);
            const auto problems = bank::validate_bank(dir);
            QVERIFY2(!problems.empty(), c.name.c_str());
            const auto before = snapshot(dir);
            // The same one line (after "error: ") from each command.
            auto reason = [](const run_result& r) { return r.err.trimmed().section(": error: ", 1); };
            const auto info = cli({"bank-info", q(dir)});
            const auto add = cli({"add", q(dir), q(adapter)});
            const auto gen = generate(dir);
            QVERIFY2(info.exit_code == 1 && add.exit_code == 1 && gen.exit_code == 1,
                     qPrintable(QString::fromStdString(c.name) + ": " + info.err + add.err + gen.err));
            QCOMPARE(info.err.trimmed().count('\n'), 0);
            QVERIFY2(reason(info).contains(QString::fromStdString(c.needle)), qPrintable(info.err));
            QVERIFY2(reason(info).contains(QString::fromStdString(problems.front())), qPrintable(info.err));
            QCOMPARE(reason(add), reason(info));
            QVERIFY2(gen.err.contains(reason(info)), qPrintable(gen.err));
            QCOMPARE(snapshot(dir), before); // add did not touch it
        }
    }

    void fullDiskLeavesPreviousStateIntact() {
        const auto fleet = make_fleet("disk-fleet", false);
        const fs::path bank = root() / "disk-bank";
        auto r = cli({"compress", q(fleet), "--rank", "4", "--dtype", "f32", "--out", q(bank)});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto bank_before = snapshot(bank);
        const fs::path out = root() / "disk-export";
        r = cli({"export-peft", q(bank), "--out", q(out)});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const auto export_before = snapshot(out);
        const fs::path late = root() / "disk-late" / "newcomer";
        test::write_crafted_adapter(late, good_adapter(7));

        for (const QString budget : {"0", "1000", "4000"}) {
            const QStringList env{"LORAFLEET_TEST_FAIL_WRITE_AFTER=" + budget};
            r = cli({"compress", q(fleet), "--rank", "3", "--dtype", "f32", "--overwrite", "--out", q(bank)},
                    env);
            QCOMPARE(r.exit_code, 1);
            QVERIFY2(r.err.contains("No space left on device"), qPrintable(r.err));
            QCOMPARE(lines_naming(r.err, "error:"), 1);
            r = cli({"add", q(bank), q(late)}, env);
            QCOMPARE(r.exit_code, 1);
            QVERIFY2(r.err.contains("No space left on device"), qPrintable(r.err));
            QCOMPARE(snapshot(bank), bank_before);
            r = cli({"export-peft", q(bank), "--out", q(out), "--overwrite"}, env);
            QCOMPARE(r.exit_code, 1);
            QVERIFY2(r.err.contains("No space left on device"), qPrintable(r.err));
            QCOMPARE(snapshot(out), export_before);
            r = cli({"export-peft", q(bank), "--out", q(root() / "disk-export-new")}, env);
            QCOMPARE(r.exit_code, 1);
            QVERIFY(!fs::exists(root() / "disk-export-new"));
            QCOMPARE(staging_leftovers(root()), std::size_t(0));
        }
        // A real file-size limit (writes fail with EFBIG, as on a full disk, without root).
        const QString limit = "trap '' XFSZ; ulimit -f 8;"; // 8 KiB per file
        r = cli({"compress", q(fleet), "--rank", "3", "--dtype", "f32", "--overwrite", "--out", q(bank)}, {},
                limit);
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("File too large"), qPrintable(r.err));
        r = cli({"export-peft", q(bank), "--out", q(out), "--overwrite"}, {}, limit);
        QCOMPARE(r.exit_code, 1);
        QCOMPARE(snapshot(bank), bank_before);
        QCOMPARE(snapshot(out), export_before);
        QCOMPARE(staging_leftovers(root()), std::size_t(0));
        // And with room again, both writers succeed.
        r = cli({"add", q(bank), q(late)});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QCOMPARE(bank::read_bank(bank).adapters.size(), std::size_t(4));
    }

    void existingOutRefusedBeforeAnyWork() {
        const fs::path bank = root() / "out-bank";
        test::model_bank_spec spec;
        spec.modules = {"q_proj"};
        bank::write_bank(bank, test::make_model_bank(tiny(), spec), {io::dtype::F32, false});
        // The fleet does not even exist: the refusal must come first.
        auto r = cli({"compress", q(root() / "no-such-fleet"), "--out", q(bank)});
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("already exists"), qPrintable(r.err));
        const fs::path out = root() / "out-export";
        fs::create_directories(out / "something");
        r = cli({"export-peft", q(root() / "no-such-bank"), "--out", q(out)});
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("already exists"), qPrintable(r.err));
        std::ofstream(out / "notes.txt") << "mine";
        r = cli({"export-peft", q(bank), "--out", q(out), "--overwrite"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("other than PEFT adapter folders"), qPrintable(r.err));
        QVERIFY(fs::exists(out / "notes.txt"));
    }
};

QTEST_APPLESS_MAIN(TestCliBankSafety)
#include "test_cli_bank_safety.moc"
