// `lorafleet-cli generate` with adapters, end to end through the CLI only: a planted fleet (synth) is
// compressed (compress) and exported (export-peft); greedy text served from the bank with --adapter NAME
// equals the text of the exported adapter served raw with --adapters, differs from the base model's, and
// differs between adapters; an unknown adapter name, or --adapter without a source, is a usage error
// (exit code 2) whose message names the adapter and lists known ones; a foreign adapter fails (exit 1).
#include "tests/support/cli_runner.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

using namespace lorafleet;

namespace {

QString model_path() {
    return QString::fromStdString((test::source_dir() / "resources/models/tinystories-656k").string());
}

} // namespace

class TestCliGenerateAdapters : public QObject {
    Q_OBJECT

    QTemporaryDir m_tmp;
    QString m_bank, m_export;

    QStringList generate(const QStringList& extra) const {
        return QStringList{"generate",         "--model",      model_path(), "--prompt",
                           "Once upon a time", "--max-tokens", "24"} +
               extra;
    }

private slots:
    void initTestCase() {
        QVERIFY(m_tmp.isValid());
        const QString fleet = m_tmp.filePath("fleet");
        m_bank = m_tmp.filePath("bank");
        m_export = m_tmp.filePath("export");
        auto r = test::run_cli({"synth",
                                "--out",
                                fleet,
                                "--adapters",
                                "4",
                                "--geometry",
                                "tinystories-656k",
                                "--modules",
                                "q_proj,v_proj,o_proj,down_proj",
                                "--rank",
                                "4",
                                "--alpha",
                                "64",
                                "--clusters",
                                "2",
                                "--noise",
                                "0.3",
                                "--dtype",
                                "f32",
                                "--seed",
                                "3"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        r = test::run_cli({"compress", fleet, "--out", m_bank, "--rank", "6", "--clusters", "2", "--dtype",
                           "f32", "--threads", "1"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        r = test::run_cli({"export-peft", m_bank, "--out", m_export});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
    }

    void bankAndExportedRawGiveTheSameText() {
        const auto base = test::run_cli(generate({}));
        QVERIFY2(base.exit_code == 0, qPrintable(base.err));
        QStringList texts;
        for (const QString name : {"adapter-0000", "adapter-0001"}) {
            const auto bank = test::run_cli(generate({"--bank", m_bank, "--adapter", name}));
            QVERIFY2(bank.exit_code == 0, qPrintable(bank.err));
            const auto raw = test::run_cli(
                generate({"--adapters", m_export, "--adapter", name, "--adapter-cache-mb", "1"}));
            QVERIFY2(raw.exit_code == 0, qPrintable(raw.err));
            QVERIFY(!bank.out.isEmpty());
            QCOMPARE(bank.out, raw.out);
            QVERIFY2(bank.out != base.out, qPrintable(bank.out));
            texts << bank.out;
        }
        QVERIFY2(texts[0] != texts[1], qPrintable(texts[0]));
        // Without --adapter the base model is used even when adapters are loaded.
        QCOMPARE(test::run_cli(generate({"--bank", m_bank})).out, base.out);
    }

    void unknownAdapterIsAUsageError() {
        for (const QStringList& source :
             {QStringList{"--bank", m_bank}, QStringList{"--adapters", m_export}}) {
            const auto r = test::run_cli(generate(source + QStringList{"--adapter", "no-such-adapter"}));
            QCOMPARE(r.exit_code, 2);
            QVERIFY(r.out.isEmpty());
            QVERIFY2(r.err.contains("no-such-adapter") && r.err.contains("adapter-0000"), qPrintable(r.err));
        }
        auto r = test::run_cli(generate({"--adapter", "adapter-0000"}));
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("--bank"), qPrintable(r.err));
        r = test::run_cli(generate({"--bank", m_bank, "--adapters", m_export}));
        QCOMPARE(r.exit_code, 2);
    }

    void badAdapterSourcesFail() {
        // The cache budget is at least 1 MiB.
        auto r = test::run_cli(generate({"--adapters", m_export, "--adapter-cache-mb", "0"}));
        QCOMPARE(r.exit_code, 2);
        // An adapter of another base model (TinyLlama, hidden 2048) is refused with its shapes.
        LORAFLEET_REQUIRE_FIXTURES();
        const QString foreign = QString::fromStdString(
            (test::fixtures_dir() / "adapters/tinyllama-1.1b-chat-arona-ckpt75").string());
        r = test::run_cli(generate({"--adapters", foreign, "--adapter", "tinyllama-1.1b-chat-arona-ckpt75"}));
        QCOMPARE(r.exit_code, 1);
        QVERIFY(r.out.isEmpty());
        QVERIFY2(r.err.contains("tinyllama-1.1b-chat-arona-ckpt75"), qPrintable(r.err));
    }
};

QTEST_GUILESS_MAIN(TestCliGenerateAdapters)
#include "test_cli_generate_adapters.moc"
