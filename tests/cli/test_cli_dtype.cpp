// lorafleet-cli --dtype (generate; serve and bench-serve parse it the same way): the fixture's values are
// exact in bf16 and in binary16, so greedy generation gives the same text whether the weights are kept as
// stored (auto), widened to float32, or narrowed to bfloat16 / float16 on load; an unknown dtype is a
// usage error (exit 2) that names the option; --help documents it.
#include "tests/support/cli_runner.hpp"
#include "tests/support/test_paths.hpp"

#include <QtTest/QtTest>

using namespace lorafleet;

namespace {

QString model_path() {
    return QString::fromStdString((test::fixtures_dir() / "models/tinystories-656k").string());
}

test::cli_result generate(const QStringList& extra) {
    return test::run_cli(QStringList{"generate", "--model", model_path(), "--prompt", "Once upon a time",
                                     "--max-tokens", "40", "--threads", "2"} +
                         extra);
}

} // namespace

class TestCliDtype : public QObject {
    Q_OBJECT

private slots:
    void everyDtypeGivesTheSameGreedyText() {
        const auto base = generate({});
        QVERIFY2(base.exit_code == 0, qPrintable(base.err));
        QVERIFY(base.out.size() > 20);
        for (const char* dt : {"auto", "float32", "bfloat16", "float16"}) {
            const auto r = generate({"--dtype", dt});
            QVERIFY2(r.exit_code == 0, qPrintable(r.err));
            QCOMPARE(r.out, base.out);
        }
    }

    void unknownDtypeIsAUsageError() {
        const auto r = generate({"--dtype", "int4"});
        QCOMPARE(r.exit_code, 2);
        QVERIFY2(r.err.contains("--dtype"), qPrintable(r.err));
        for (const char* cmd : {"generate", "serve", "bench-serve"}) {
            const auto h = test::run_cli({cmd, "--help"});
            QVERIFY2(h.out.contains("--dtype") || h.err.contains("--dtype"), cmd);
        }
    }
};

QTEST_GUILESS_MAIN(TestCliDtype)
#include "test_cli_dtype.moc"
