// `--device cpu|cuda|auto` on generate, bench-serve and serve, as real processes. Without a usable CUDA
// device (this project's CI): --device cuda exits 1 with one line of error carrying the probe's reason
// (backend::probe_devices_now, asked independently of the CLI's cached registry); --device auto prints the
// same text as
// --device cpu (base model and a raw adapter) and says on stderr that it fell back and why; an unknown
// device is a usage error (exit 2). The cases that need "no device" QSKIP where one is usable.
#include "engine/backend/device_registry.hpp"
#include "engine/serve/model/model_weights.hpp"
#include "tests/support/cli_runner.hpp"
#include "tests/support/peft_writer.hpp"
#include "tests/support/test_paths.hpp"

#include <QTemporaryDir>
#include <QtTest/QtTest>

using namespace lorafleet;
using lorafleet::test::run_cli;

namespace {

QString model_path() {
    return QString::fromStdString((test::source_dir() / "resources/models/tinystories-656k").string());
}

QStringList generate(const QStringList& extra) {
    return QStringList{"generate",         "--model",      model_path(), "--prompt",
                       "Once upon a time", "--max-tokens", "16"} +
           extra;
}

// stderr without its final newline holds no other line break.
bool one_line(const QString& err) {
    const QString t = err.trimmed();
    return !t.isEmpty() && !t.contains('\n');
}

} // namespace

class TestCliDevice : public QObject {
    Q_OBJECT

private slots:
    void generateOnCudaWithoutADeviceFailsWithTheReason() {
        const auto probe = backend::probe_devices_now();
        if (probe.available) QSKIP("a CUDA device is usable here");
        const auto r = run_cli(generate({"--device", "cuda"}));
        QCOMPARE(r.exit_code, 1);
        QVERIFY(r.out.isEmpty());
        QVERIFY2(one_line(r.err), qPrintable(r.err));
        QVERIFY2(r.err.contains("--device cuda") && r.err.contains(QString::fromStdString(probe.reason)),
                 qPrintable(r.err));
    }

    void generateOnAutoPrintsTheCpuText() {
        const auto probe = backend::probe_devices_now();
        const auto cpu = run_cli(generate({"--device", "cpu"}));
        QVERIFY2(cpu.exit_code == 0, qPrintable(cpu.err));
        QVERIFY(!cpu.out.isEmpty());
        QCOMPARE(cpu.err.trimmed(), QString("generate: device cpu"));
        const auto automatic = run_cli(generate({"--device", "auto"}));
        QVERIFY2(automatic.exit_code == 0, qPrintable(automatic.err));
        QCOMPARE(automatic.out, cpu.out);
        if (!probe.available)
            QVERIFY2(automatic.err.contains("device cpu (auto: no usable CUDA device: ") &&
                         automatic.err.contains(QString::fromStdString(probe.reason)),
                     qPrintable(automatic.err));
        else
            QVERIFY2(automatic.err.contains("device cuda"), qPrintable(automatic.err));
        // Without --device nothing is added to stderr.
        const auto plain = run_cli(generate({}));
        QCOMPARE(plain.out, cpu.out);
        QVERIFY2(plain.err.isEmpty(), qPrintable(plain.err));
    }

    void generateWithAnAdapterOnAutoPrintsTheCpuText() {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const auto w = serve::model_weights::load(model_path().toStdString());
        const std::filesystem::path dir = std::filesystem::path(tmp.path().toStdString()) / "crafted";
        test::write_crafted_adapter(
            dir, test::crafted_llama_adapter(w->geometry(), {"q_proj", "v_proj"}, 4, 16.0));
        const QStringList adapter{"--adapters", QString::fromStdString(dir.string()), "--adapter", "crafted"};
        const auto base = run_cli(generate({"--device", "cpu"}));
        const auto cpu = run_cli(generate(adapter + QStringList{"--device", "cpu"}));
        const auto automatic = run_cli(generate(adapter + QStringList{"--device", "auto"}));
        QVERIFY2(cpu.exit_code == 0, qPrintable(cpu.err));
        QVERIFY2(automatic.exit_code == 0, qPrintable(automatic.err));
        QCOMPARE(automatic.out, cpu.out);
        QVERIFY2(cpu.out != base.out, qPrintable(cpu.out)); // the adapter is really applied
    }

    void anUnknownDeviceIsAUsageError() {
        for (const char* command : {"generate", "bench-serve", "serve"}) {
            QStringList args{command, "--model", model_path(), "--device", "gpu"};
            if (QString(command) == "generate") args = generate({"--device", "gpu"});
            if (QString(command) == "bench-serve")
                args << "--adapters" << model_path() << "--requests"
                     << "1"
                     << "--max-tokens"
                     << "1";
            const auto r = run_cli(args);
            QCOMPARE(r.exit_code, 2);
            QVERIFY2(r.err.contains("unknown device 'gpu'"), qPrintable(r.err));
        }
    }

    void serveAndBenchServeOnCudaWithoutADeviceFail() {
        const auto probe = backend::probe_devices_now();
        if (probe.available) QSKIP("a CUDA device is usable here");
        const auto serve = run_cli({"serve", "--model", model_path(), "--port", "0", "--device", "cuda"});
        QCOMPARE(serve.exit_code, 1);
        QVERIFY2(serve.err.contains(QString::fromStdString(probe.reason)), qPrintable(serve.err));
        QVERIFY(!serve.err.contains("listening"));

        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const auto w = serve::model_weights::load(model_path().toStdString());
        const std::filesystem::path dir = std::filesystem::path(tmp.path().toStdString()) / "crafted";
        test::write_crafted_adapter(dir, test::crafted_llama_adapter(w->geometry(), {"q_proj"}, 2, 4.0));
        const auto bench = run_cli({"bench-serve", "--model", model_path(), "--adapters",
                                    QString::fromStdString(dir.string()), "--requests", "2", "--max-tokens",
                                    "2", "--device", "cuda"});
        QCOMPARE(bench.exit_code, 1);
        QVERIFY2(bench.err.contains(QString::fromStdString(probe.reason)), qPrintable(bench.err));
    }

    void benchServeOnAutoRunsAndSaysWhere() {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const auto w = serve::model_weights::load(model_path().toStdString());
        const std::filesystem::path dir = std::filesystem::path(tmp.path().toStdString()) / "crafted";
        test::write_crafted_adapter(dir, test::crafted_llama_adapter(w->geometry(), {"q_proj"}, 2, 4.0));
        const auto r = run_cli({"bench-serve", "--model", model_path(), "--adapters",
                                QString::fromStdString(dir.string()), "--requests", "3", "--max-tokens", "3",
                                "--device", "auto", "--json"});
        QVERIFY2(r.exit_code == 0, qPrintable(r.err));
        QVERIFY2(r.err.contains("bench-serve: raw: device "), qPrintable(r.err));
    }
};

QTEST_GUILESS_MAIN(TestCliDevice)
#include "test_cli_device.moc"
