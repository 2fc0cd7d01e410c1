// `lorafleet-cli synth` at the process boundary: it writes N adapter folders (exit 0, progress on stderr,
// one summary line on stdout), rejects bad arguments with exit 2 and one line, refuses to clobber a
// non-empty folder, and its output is accepted by `lorafleet-cli inspect` as real PEFT adapters.
#include "tests/support/cli_runner.hpp"

#include <QDir>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest/QtTest>

using lorafleet::test::run_cli;

namespace {

QStringList lines(const QString& text) {
    return text.split('\n', Qt::SkipEmptyParts);
}

} // namespace

class TestCliSynth : public QObject {
    Q_OBJECT
private slots:
    void writesTheFleet() {
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/fleet";
        const auto r = run_cli({"synth", "--out", out, "--adapters", "5", "--geometry", "tinystories-656k",
                                "--rank", "4", "--seed", "3", "--clusters", "2"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        const QStringList names = QDir(out).entryList(QDir::Dirs | QDir::NoDotAndDotDot, QDir::Name);
        QCOMPARE(names, (QStringList{"adapter-0000", "adapter-0001", "adapter-0002", "adapter-0003",
                                     "adapter-0004"}));
        for (const auto& n : names) {
            QVERIFY(QFile::exists(out + "/" + n + "/adapter_config.json"));
            QVERIFY(QFile::exists(out + "/" + n + "/adapter_model.safetensors"));
        }
        QCOMPARE(lines(r.out).size(), 1);
        QVERIFY2(r.out.contains("wrote 5 adapters") && r.out.contains(" bytes (") &&
                     r.out.contains(" s (rank 4,") && r.out.contains("clusters 2)"),
                 qPrintable(r.out));
        QVERIFY2(r.err.contains("5/5 adapters (100%)"), qPrintable(r.err));
    }

    void badArgumentsAreOneLineAndExitTwo() {
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/fleet";
        const QStringList base{"synth", "--out", out, "--geometry", "tinystories-656k"};
        const std::vector<std::pair<QStringList, QString>> cases{
            {{"--adapters", "0"}, "--adapters must be between 1"},
            {{"--adapters", "many"}, "--adapters expects an integer"},
            {{"--adapters", "3", "--rank", "65"}, "min(d_in, d_out) = 64 of k_proj"},
            {{"--adapters", "3", "--modules", "q_proj,w_proj"}, "unknown module 'w_proj'"},
            {{"--adapters", "3", "--clusters", "4"}, "--clusters must be between 1 and 3"},
            {{"--adapters", "3", "--dtype", "int8"}, "--dtype must be bf16, f16 or f32"},
            {{"--adapters", "3", "--noise", "-1"}, "--noise must be between"},
            {{"--adapters", "3", "--shared-a", "2"}, "--shared-a must be between 0"},
            {{"--adapters", "3", "--layers", "3"}, "--layers must be between 1 and 2"},
            {{"--adapters", "3", "--bogus"}, "unknown option --bogus"},
            {{}, "--adapters is required"},
        };
        for (const auto& [extra, needle] : cases) {
            const auto r = run_cli(base + extra);
            QVERIFY2(r.exit_code == 2,
                     qPrintable(extra.join(' ') + ": exit " + QString::number(r.exit_code)));
            QVERIFY2(lines(r.err).size() == 1 && r.err.startsWith("lorafleet-cli synth: ") &&
                         r.err.contains(needle),
                     qPrintable(extra.join(' ') + ": " + r.err));
            QVERIFY(r.out.isEmpty());
        }
        const auto no_out = run_cli({"synth", "--adapters", "2", "--geometry", "tinystories-656k"});
        QCOMPARE(no_out.exit_code, 2);
        QVERIFY(no_out.err.contains("--out is required"));
        QVERIFY(!QFile::exists(out)); // nothing was written by any of the failures
    }

    void refusesANonEmptyFolderUnlessOverwrite() {
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/fleet";
        const QStringList args{"synth",  "--out", out, "--adapters", "2", "--geometry", "tinystories-656k",
                               "--rank", "2"};
        QCOMPARE(run_cli(args).exit_code, 0);
        const auto again = run_cli(args);
        QCOMPARE(again.exit_code, 2);
        QCOMPARE(lines(again.err).size(), 1);
        QVERIFY2(again.err.contains("not empty") && again.err.contains("--overwrite"), qPrintable(again.err));
        const auto forced = run_cli(args + QStringList{"--overwrite"});
        QVERIFY2(forced.exit_code == 0, qPrintable(forced.err));
    }

    void inspectReadsTheFleetAsPeftAdapters() {
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/fleet";
        const auto w =
            run_cli({"synth", "--out", out, "--adapters", "3", "--geometry", "tinystories-656k", "--rank",
                     "8", "--alpha", "16", "--modules", "q_proj,v_proj,down_proj", "--dtype", "f16"});
        QVERIFY2(w.exit_code == 0, qPrintable(w.err));
        const auto r = run_cli({"inspect", "--json", "--base", "tinystories-656k", out});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QJsonParseError perr{};
        const auto doc = QJsonDocument::fromJson(r.out.toUtf8(), &perr);
        QCOMPARE(perr.error, QJsonParseError::NoError);
        const auto adapters = doc.array();
        QCOMPARE(adapters.size(), 3);
        for (const auto& v : adapters) {
            const auto a = v.toObject();
            QCOMPARE(a.value("rank").toInt(), 8);
            QCOMPARE(a.value("alpha").toDouble(), 16.0);
            QCOMPARE(a.value("layers").toInt(), 2);
            QCOMPARE(a.value("module_count").toInt(), 6);
            QCOMPARE(a.value("dtype").toString(), QString("F16"));
            QCOMPARE(a.value("base_model").toString(), QString("tinystories-656k"));
            QCOMPARE(a.value("modules").toArray(), (QJsonArray{"q_proj", "v_proj", "down_proj"}));
            // 2 layers x (q: 8x128 + 128x8, v: 8x128 + 64x8, down: 8x384 + 128x8) = 2 x 7680
            QCOMPARE(a.value("parameters").toInteger(), 15360);
            QVERIFY(a.value("warnings").toArray().isEmpty());
        }
    }
};

QTEST_APPLESS_MAIN(TestCliSynth)
#include "test_cli_synth.moc"
