// `lorafleet-cli inspect` at the process boundary: JSON fields for the real adapter, a fleet folder with
// one broken adapter (one stderr line naming it, the others still listed, exit 1), a truncated
// safetensors file (no crash), --base rejection, and usage errors (exit 2).
#include "engine/io/hf_config.hpp"
#include "tests/support/cli_runner.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <filesystem>

using lorafleet::test::run_cli;
namespace fs = std::filesystem;

namespace {

const fs::path real_adapter_rel = "adapters/tinyllama-1.1b-chat-arona-ckpt75";

QString qpath(const fs::path& p) {
    return QString::fromStdString(p.string());
}

QJsonArray parse_array(const QString& text, bool* ok) {
    QJsonParseError err{};
    const auto doc = QJsonDocument::fromJson(text.toUtf8(), &err);
    *ok = err.error == QJsonParseError::NoError && doc.isArray();
    return doc.array();
}

QStringList lines(const QString& text) {
    return text.split('\n', Qt::SkipEmptyParts);
}

lorafleet::test::crafted_adapter tiny_adapter(int r) {
    return lorafleet::test::crafted_llama_adapter(*lorafleet::io::geometry_preset("tinystories-656k"),
                                                  {"q_proj", "k_proj", "v_proj"}, r, 2.0 * r);
}

} // namespace

class TestCliInspect : public QObject {
    Q_OBJECT
    QTemporaryDir m_tmp;
    fs::path tmp() const { return m_tmp.path().toStdString(); }

private slots:
    void initTestCase() { QVERIFY(m_tmp.isValid()); }

    void realAdapterJson() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto dir = lorafleet::test::fixtures_dir() / real_adapter_rel;
        const auto r = run_cli({"inspect", qpath(dir), "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY2(r.err.isEmpty(), qPrintable(r.err));
        bool ok = false;
        const auto arr = parse_array(r.out, &ok);
        QVERIFY2(ok, qPrintable(r.out));
        QCOMPARE(arr.size(), 1);
        const auto o = arr[0].toObject();
        QCOMPARE(o["name"].toString(), QString("tinyllama-1.1b-chat-arona-ckpt75"));
        QVERIFY(o["path"].toString().endsWith("tinyllama-1.1b-chat-arona-ckpt75"));
        QCOMPARE(o["rank"].toInt(), 4);
        QCOMPARE(o["alpha"].toDouble(), 16.0);
        QCOMPARE(o["use_rslora"].toBool(true), false);
        QCOMPARE(o["modules"].toArray(), (QJsonArray{"q_proj", "v_proj"}));
        QCOMPARE(o["layers"].toInt(), 22);
        // TinyLlama: r = 4, hidden 2048, v out 256; q: A 4x2048 + B 2048x4, v: A 4x2048 + B 256x4.
        const qint64 per_layer = (4 * 2048 + 2048 * 4) + (4 * 2048 + 256 * 4);
        QCOMPARE(o["parameters"].toInteger(), 22 * per_layer);
        QCOMPARE(o["dtype"].toString(), QString("F32"));
        QCOMPARE(o["base_model"].toString(), QString("TinyLlama/TinyLlama-1.1B-Chat-v1.0"));
        QVERIFY(o["warnings"].isArray());
        QCOMPARE(o["warnings"].toArray().size(), 0);

        // The table form: a header and one aligned row.
        const auto t = run_cli({"inspect", qpath(dir)});
        QCOMPARE(t.exit_code, 0);
        const auto rows = lines(t.out);
        QCOMPARE(rows.size(), 2);
        QVERIFY(rows[0].startsWith("NAME"));
        QVERIFY(rows[1].startsWith("tinyllama-1.1b-chat-arona-ckpt75"));
        QCOMPARE(rows[0].indexOf("BASE MODEL"), rows[1].indexOf("TinyLlama/"));
        QVERIFY(rows[1].contains("q_proj,v_proj"));
        QVERIFY(rows[1].contains(QString::number(22 * per_layer)));
    }

    void baseCheck() {
        LORAFLEET_REQUIRE_FIXTURES();
        const auto dir = lorafleet::test::fixtures_dir() / real_adapter_rel;
        auto r = run_cli({"inspect", qpath(dir), "--base", "tinyllama-1.1b"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        r = run_cli({"inspect", qpath(dir), "--base", "tinystories-656k"});
        QCOMPARE(r.exit_code, 1);
        QCOMPARE(lines(r.err).size(), 1);
        QVERIFY2(r.err.contains("does not fit tinystories-656k"), qPrintable(r.err));
        r = run_cli({"inspect", qpath(dir), "--base", "no-such-model"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("tinyllama-1.1b"), qPrintable(r.err)); // lists the presets
    }

    void fleetWithOneBroken() {
        const fs::path fleet = tmp() / "fleet";
        lorafleet::test::write_crafted_adapter(fleet / "alpha", tiny_adapter(4));
        lorafleet::test::write_crafted_adapter(fleet / "nested" / "beta", tiny_adapter(8));
        auto broken = tiny_adapter(4);
        broken.modules[1].with_b = false;
        lorafleet::test::write_crafted_adapter(fleet / "gamma-broken", broken);
        auto warned = tiny_adapter(2);
        warned.extra_tensors.push_back(
            {"base_model.model.model.norm.extra", lorafleet::io::dtype::F32, {2}, {}});
        lorafleet::test::write_crafted_adapter(fleet / "delta", warned);

        const auto r = run_cli({"inspect", qpath(fleet), "--json"});
        QCOMPARE(r.exit_code, 1);
        const auto err = lines(r.err);
        QCOMPARE(err.size(), 1);
        QVERIFY2(err[0].startsWith("lorafleet-cli inspect: error: ") && err[0].contains("gamma-broken") &&
                     err[0].contains("no lora_B"),
                 qPrintable(r.err));
        bool ok = false;
        const auto arr = parse_array(r.out, &ok);
        QVERIFY2(ok, qPrintable(r.out));
        QCOMPARE(arr.size(), 3); // sorted by path: alpha, delta, nested/beta
        QCOMPARE(arr[0].toObject()["name"].toString(), QString("alpha"));
        QCOMPARE(arr[1].toObject()["name"].toString(), QString("delta"));
        QCOMPARE(arr[2].toObject()["name"].toString(), QString("beta"));
        QCOMPARE(arr[2].toObject()["rank"].toInt(), 8);
        QCOMPARE(arr[2].toObject()["modules"].toArray(), (QJsonArray{"q_proj", "k_proj", "v_proj"}));
        QCOMPARE(arr[2].toObject()["layers"].toInt(), 2);
        QCOMPARE(arr[1].toObject()["warnings"].toArray().size(), 1);
        QVERIFY(arr[1].toObject()["warnings"].toArray()[0].toString().contains(
            "base_model.model.model.norm.extra"));

        // Table form: the same error line, three rows, and the warning listed below the table.
        const auto t = run_cli({"inspect", qpath(fleet)});
        QCOMPARE(t.exit_code, 1);
        QCOMPARE(lines(t.err).size(), 1);
        QVERIFY(t.out.contains("\nwarnings:\n  delta: "));
        QVERIFY(!t.out.contains("gamma-broken"));
    }

    void truncatedSafetensors() {
        LORAFLEET_REQUIRE_FIXTURES();
        const fs::path dir = tmp() / "truncated";
        fs::create_directories(dir);
        const fs::path src = lorafleet::test::fixtures_dir() / real_adapter_rel;
        fs::copy_file(src / "adapter_config.json", dir / "adapter_config.json");
        fs::copy_file(src / "adapter_model.safetensors", dir / "adapter_model.safetensors");
        fs::permissions(dir / "adapter_model.safetensors", fs::perms::owner_write, fs::perm_options::add);
        for (const std::uintmax_t size : {std::uintmax_t(1000000), std::uintmax_t(20), std::uintmax_t(0)}) {
            fs::resize_file(dir / "adapter_model.safetensors", size);
            const auto r = run_cli({"inspect", qpath(dir)});
            QCOMPARE(r.exit_code, 1); // not -2 (crash)
            QCOMPARE(lines(r.err).size(), 1);
            QVERIFY2(r.err.startsWith("lorafleet-cli inspect: error: ") &&
                         r.err.contains("adapter_model.safetensors"),
                     qPrintable(r.err));
        }
    }

    void nothingFound() {
        const fs::path empty = tmp() / "empty";
        fs::create_directories(empty / "sub");
        auto r = run_cli({"inspect", qpath(empty)});
        QCOMPARE(r.exit_code, 1);
        QCOMPARE(lines(r.err).size(), 1);
        QVERIFY2(r.err.contains("no PEFT adapters found"), qPrintable(r.err));
        r = run_cli({"inspect", qpath(tmp() / "missing")});
        QCOMPARE(r.exit_code, 1);
        QCOMPARE(lines(r.err).size(), 1);
        QVERIFY2(r.err.contains("missing"), qPrintable(r.err));
    }

    void usageErrors() {
        auto r = run_cli({"inspect", "--bogus", "x"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("unknown option --bogus"), qPrintable(r.err));
        r = run_cli({"inspect"});
        QCOMPARE(r.exit_code, 2);
        r = run_cli({"inspect", "x", "--base"});
        QCOMPARE(r.exit_code, 2);
        r = run_cli({"inspect", "--help"});
        QCOMPARE(r.exit_code, 0);
        QVERIFY(r.out.contains("usage: lorafleet-cli inspect"));
    }
};

QTEST_GUILESS_MAIN(TestCliInspect)
#include "test_cli_inspect.moc"
