// `lorafleet-cli synth-model` at the process boundary: it writes a model folder that `generate` runs
// (exit 0, progress on stderr, one summary line on stdout), rejects bad arguments with exit 2 and one
// line, refuses to replace an existing folder without --force, and when the disk fails half-way (the
// LORAFLEET_TEST_FAIL_WRITE_AFTER hook of engine/io/atomic_file) or the parent cannot hold a folder it
// exits 1 with the reason and leaves nothing behind.
#include "tests/support/cli_runner.hpp"
#include "tests/support/test_paths.hpp"

#include <QDir>
#include <QFile>
#include <QJsonDocument>
#include <QJsonObject>
#include <QProcess>
#include <QTemporaryDir>
#include <QtTest/QtTest>

#include <unistd.h>

using lorafleet::test::run_cli;

namespace {

QStringList lines(const QString& text) {
    return text.split('\n', Qt::SkipEmptyParts);
}

// run_cli with extra environment variables.
lorafleet::test::cli_result run_cli_env(const QStringList& args, const QStringList& env) {
    QProcess p;
    auto e = QProcessEnvironment::systemEnvironment();
    for (const auto& kv : env)
        e.insert(kv.section('=', 0, 0), kv.section('=', 1));
    p.setProcessEnvironment(e);
    p.start(QString::fromStdString(lorafleet::test::cli_path().string()), args);
    lorafleet::test::cli_result r;
    if (!p.waitForStarted(10000) || !p.waitForFinished(120000)) {
        p.kill();
        p.waitForFinished();
        r.err = "lorafleet-cli did not run";
        return r;
    }
    r.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2;
    r.out = QString::fromUtf8(p.readAllStandardOutput());
    r.err = QString::fromUtf8(p.readAllStandardError());
    return r;
}

QStringList everything_in(const QString& dir) {
    return QDir(dir).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot, QDir::Name);
}

} // namespace

class TestCliSynthModel : public QObject {
    Q_OBJECT
private slots:
    void writesAModelThatGenerateRuns() {
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/model";
        const auto r = run_cli({"synth-model", "--geometry", "tinystories-656k", "--out", out, "--seed", "3",
                                "--shard-mb", "1", "--dtype", "fp16"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QCOMPARE(lines(r.out).size(), 1);
        QVERIFY2(r.out.startsWith("wrote LlamaForCausalLM to " + out) && r.out.contains("2 layers") &&
                     r.out.contains("vocab 2048") && r.out.contains("2 shards") && r.out.contains("fp16"),
                 qPrintable(r.out));
        QVERIFY2(r.err.contains("(100%)"), qPrintable(r.err));
        QCOMPARE(everything_in(out),
                 (QStringList{"config.json", "generation_config.json", "model-00001-of-00002.safetensors",
                              "model-00002-of-00002.safetensors", "model.safetensors.index.json",
                              "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"}));
        QFile config(out + "/config.json");
        QVERIFY(config.open(QIODevice::ReadOnly));
        const auto c = QJsonDocument::fromJson(config.readAll()).object();
        QCOMPARE(c.value("torch_dtype").toString(), QString("float16"));
        QCOMPARE(c.value("num_hidden_layers").toInt(), 2);

        // The engine's own front end runs it (greedy, so the text is reproducible).
        const auto g = run_cli(
            {"generate", "--model", out, "--prompt", "Once upon a time", "--max-tokens", "8", "--stats"});
        QVERIFY2(g.exit_code == 0, qPrintable(g.err));
        QVERIFY2(g.err.contains("generated "), qPrintable(g.err));
        const auto again =
            run_cli({"generate", "--model", out, "--prompt", "Once upon a time", "--max-tokens", "8"});
        QCOMPARE(again.out, g.out);

        // --layers cuts the depth in config.json too.
        const QString shallow = tmp.path() + "/shallow";
        const auto s =
            run_cli({"synth-model", "--geometry", "tinystories-656k", "--out", shallow, "--layers", "1"});
        QVERIFY2(s.exit_code == 0, qPrintable(s.err));
        QVERIFY2(s.out.contains("1 layers") && s.out.contains("1 shard,"), qPrintable(s.out));
    }

    void badArgumentsAreOneLineAndExitTwo() {
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/model";
        const std::vector<std::pair<QStringList, QString>> cases{
            {{"--out", out}, "--geometry is required"},
            {{"--geometry", "tinystories-656k"}, "--out is required"},
            {{"--out", out, "--geometry", "gpt-5"}, "not a preset"},
            {{"--out", out, "--geometry", "tinystories-656k", "--dtype", "int8"},
             "--dtype must be bf16, fp16 or fp32"},
            {{"--out", out, "--geometry", "tinystories-656k", "--layers", "3"},
             "--layers must be between 1 and 2"},
            {{"--out", out, "--geometry", "tinystories-656k", "--shard-mb", "0"},
             "--shard-mb must be between 1"},
            {{"--out", out, "--geometry", "tinystories-656k", "--seed", "-1"}, "--seed must be between 0"},
            {{"--out", out, "--geometry", "tinystories-656k", "--bogus"}, "unknown option --bogus"},
            {{"--out", out, "--geometry", "tinystories-656k", "extra"}, "unexpected argument 'extra'"},
        };
        for (const auto& [args, needle] : cases) {
            const auto r = run_cli(QStringList{"synth-model"} + args);
            QVERIFY2(r.exit_code == 2, qPrintable(args.join(' ') + ": exit " + QString::number(r.exit_code)));
            QVERIFY2(lines(r.err).size() == 1 && r.err.startsWith("lorafleet-cli synth-model: ") &&
                         r.err.contains(needle),
                     qPrintable(args.join(' ') + ": " + r.err));
            QVERIFY(r.out.isEmpty());
        }
        QVERIFY(everything_in(tmp.path()).isEmpty()); // nothing was written by any of the failures
        const auto help = run_cli({"synth-model", "--help"});
        QCOMPARE(help.exit_code, 0);
        QVERIFY(help.out.contains("--shard-mb") && help.out.contains("--force"));
    }

    void refusesAnExistingFolderUnlessForce() {
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/model";
        const QStringList args{"synth-model", "--geometry", "tinystories-656k", "--out", out};
        QCOMPARE(run_cli(args).exit_code, 0);
        QFile before(out + "/model-00001-of-00001.safetensors");
        QVERIFY(before.open(QIODevice::ReadOnly));
        const QByteArray old_bytes = before.readAll();
        before.close();
        const auto again = run_cli(args + QStringList{"--seed", "1"});
        QCOMPARE(again.exit_code, 2);
        QCOMPARE(lines(again.err).size(), 1);
        QVERIFY2(again.err.contains("not empty") && again.err.contains("--force"), qPrintable(again.err));
        QFile same(out + "/model-00001-of-00001.safetensors");
        QVERIFY(same.open(QIODevice::ReadOnly));
        QCOMPARE(same.readAll(), old_bytes);
        same.close();
        const auto forced = run_cli(args + QStringList{"--seed", "1", "--force"});
        QVERIFY2(forced.exit_code == 0, qPrintable(forced.err));
        QFile replaced(out + "/model-00001-of-00001.safetensors");
        QVERIFY(replaced.open(QIODevice::ReadOnly));
        QCOMPARE(replaced.size(), old_bytes.size());
        QVERIFY(replaced.readAll() != old_bytes);
        QCOMPARE(everything_in(tmp.path()), QStringList{"model"}); // no staging folder left
    }

    void aFailedWriteLeavesNothing() {
        QTemporaryDir tmp;
        const QString out = tmp.path() + "/model";
        // The disk fills up half-way through the weights (the model is ~1.3 MB of bf16).
        for (const QString budget : {"0", "100000", "1000000"}) {
            const auto r = run_cli_env({"synth-model", "--geometry", "tinystories-656k", "--out", out},
                                       {"LORAFLEET_TEST_FAIL_WRITE_AFTER=" + budget});
            QCOMPARE(r.exit_code, 1);
            QVERIFY2(r.err.contains("No space left on device") &&
                         r.err.contains("lorafleet-cli synth-model: error:"),
                     qPrintable(r.err));
            QVERIFY(r.out.isEmpty());
            QVERIFY2(everything_in(tmp.path()).isEmpty(), qPrintable(everything_in(tmp.path()).join(' ')));
        }
        // A parent that cannot hold a folder (a file): exit 1 naming the path, nothing created.
        QFile file(tmp.path() + "/file");
        QVERIFY(file.open(QIODevice::WriteOnly));
        file.close();
        const auto r =
            run_cli({"synth-model", "--geometry", "tinystories-656k", "--out", tmp.path() + "/file/model"});
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("file/model") && r.err.contains("cannot create"), qPrintable(r.err));
        QCOMPARE(everything_in(tmp.path()), QStringList{"file"});
    }

    void readOnlyParentIsExitOne() {
        if (::geteuid() == 0) QSKIP("running as root: permissions are not enforced");
        QTemporaryDir tmp;
        const QString ro = tmp.path() + "/ro";
        QVERIFY(QDir().mkpath(ro));
        QFile::setPermissions(ro, QFile::ReadOwner | QFile::ExeOwner);
        const auto r = run_cli({"synth-model", "--geometry", "tinystories-656k", "--out", ro + "/model"});
        QFile::setPermissions(ro, QFile::ReadOwner | QFile::WriteOwner | QFile::ExeOwner);
        QCOMPARE(r.exit_code, 1);
        QVERIFY2(r.err.contains("Permission denied"), qPrintable(r.err));
        QVERIFY(everything_in(ro).isEmpty());
    }
};

QTEST_APPLESS_MAIN(TestCliSynthModel)
#include "test_cli_synth_model.moc"
