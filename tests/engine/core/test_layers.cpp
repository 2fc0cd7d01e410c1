// The include layering check (engine/check_layers.cmake) as a real `cmake -P` run: it passes on this
// source tree, and on small planted trees it fails for each kind of wrong-way include (naming file, line
// and the two layers) and passes for the allowed ones. The stamp the build step waits for is written
// only when the check passes.
#include <QDir>
#include <QFile>
#include <QProcess>
#include <QTemporaryDir>
#include <QTest>

namespace {

struct check_result {
    int exit_code = -1;
    QString output; // stdout and stderr together
};

check_result run_check(const QString& root, const QString& stamp = {}) {
    QStringList args{QStringLiteral("-DROOT=") + root};
    if (!stamp.isEmpty()) args << QStringLiteral("-DSTAMP=") + stamp;
    args << QStringLiteral("-P") << QStringLiteral(LORAFLEET_SOURCE_DIR "/engine/check_layers.cmake");
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    p.start(QStringLiteral(LORAFLEET_CMAKE_COMMAND), args);
    if (!p.waitForFinished(120000)) return {};
    return {p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -1, QString::fromUtf8(p.readAll())};
}

// Writes `text` to root/rel, creating folders.
void write(const QString& root, const QString& rel, const QByteArray& text) {
    const QString path = root + "/" + rel;
    QVERIFY(QDir().mkpath(QFileInfo(path).absolutePath()));
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    QCOMPARE(f.write(text), qint64(text.size()));
}

// A tiny tree where every part has one header and nothing includes across parts.
void write_clean_tree(const QString& root) {
    for (const char* rel :
         {"engine/core/error.hpp", "engine/io/file.hpp", "engine/compress/fit.hpp", "engine/bank/bank.hpp",
          "engine/backend/device.hpp", "engine/serve/model/pass.hpp", "engine/backend/cuda/glue.cpp",
          "engine/http/http.hpp", "engine/api/api.hpp", "kernels/launch.hpp", "ui/main/view.cpp",
          "app/cli/main.cpp"})
        write(root, rel, "#pragma once\n");
}

} // namespace

class TestLayers : public QObject {
    Q_OBJECT

private slots:
    void realTreePasses() {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        const QString stamp = tmp.filePath("layers.stamp");
        const check_result r = run_check(QStringLiteral(LORAFLEET_SOURCE_DIR), stamp);
        QVERIFY2(r.exit_code == 0, qPrintable(r.output));
        QVERIFY2(r.output.contains("no wrong-way include"), qPrintable(r.output));
        QVERIFY(QFile::exists(stamp));
    }

    void wrongWayIncludeFailsWithFileLineAndLayers() {
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        write_clean_tree(tmp.path());
        write(tmp.path(), "engine/io/reader.cpp",
              "// a reader\n#include \"engine/core/error.hpp\"\n#include \"engine/serve/model/pass.hpp\"\n");
        const QString stamp = tmp.filePath("layers.stamp");
        const check_result r = run_check(tmp.path(), stamp);
        QVERIFY2(r.exit_code != 0, qPrintable(r.output));
        QVERIFY2(r.output.contains("engine/io/reader.cpp:3: engine/io may not include engine/serve"),
                 qPrintable(r.output));
        QVERIFY2(r.output.contains("engine/io may include: engine/core"), qPrintable(r.output));
        QVERIFY2(!r.output.contains("reader.cpp:2:"), qPrintable(r.output)); // io -> core is allowed
        QVERIFY(!QFile::exists(stamp));                                      // the build step fails
    }

    void eachRule_data() {
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("include");
        QTest::addColumn<bool>("allowed");
        QTest::addColumn<QString>("message");
        const auto row = [](const char* name, const char* file, const char* inc, bool ok, const char* msg) {
            QTest::newRow(name) << QString(file) << QString(inc) << ok << QString(msg);
        };
        row("ui -> kernels", "ui/main/x.cpp", "kernels/launch.hpp", false, "ui may not include kernels");
        row("app -> kernels", "app/cli/x.cpp", "kernels/launch.hpp", false, "app may not include kernels");
        row("ui -> app", "ui/main/x.cpp", "app/cli/main.cpp", false, "ui may not include app");
        row("engine -> ui", "engine/serve/x.cpp", "ui/main/view.cpp", false,
            "engine/serve may not include ui");
        row("kernels -> engine", "kernels/x.cu", "engine/core/error.hpp", false,
            "kernels may not include engine/core");
        row("serve -> kernels", "engine/serve/model/x.cpp", "kernels/launch.hpp", false,
            "engine/serve may not include kernels");
        row("serve -> backend/cuda", "engine/serve/model/x.cpp", "engine/backend/cuda/glue.cpp", false,
            "engine/serve may not include engine/backend/cuda");
        row("compress -> backend", "engine/compress/x.cpp", "engine/backend/device.hpp", false,
            "engine/compress may not include engine/backend");
        row("core -> io", "engine/core/x.hpp", "engine/io/file.hpp", false,
            "engine/core may not include engine/io");
        row("http -> serve", "engine/http/x.cpp", "engine/serve/model/pass.hpp", false,
            "engine/http may not include engine/serve");
        row("ui -> backend/cuda", "ui/main/x.cpp", "engine/backend/cuda/glue.cpp", false,
            "ui may not include engine/backend/cuda");
        row("unknown part", "engine/newpart/x.cpp", "engine/core/error.hpp", false,
            "engine/newpart is not in the layer table");
        row("backend/cuda -> kernels", "engine/backend/cuda/x.cpp", "kernels/launch.hpp", true, "");
        row("backend/cuda -> serve", "engine/backend/cuda/x.cpp", "engine/serve/model/pass.hpp", true, "");
        row("serve -> backend", "engine/serve/model/x.cpp", "engine/backend/device.hpp", true, "");
        row("ui -> serve", "ui/main/x.cpp", "engine/serve/model/pass.hpp", true, "");
        row("app -> ui", "app/cli/x.cpp", "ui/main/view.cpp", true, "");
        row("api -> http", "engine/api/x.cpp", "engine/http/http.hpp", true, "");
        row("within kernels", "kernels/x.cu", "kernels/launch.hpp", true, "");
        row("system header", "engine/core/x.hpp", "vector", true, "");
    }

    void eachRule() {
        QFETCH(QString, file);
        QFETCH(QString, include);
        QFETCH(bool, allowed);
        QFETCH(QString, message);
        QTemporaryDir tmp;
        QVERIFY(tmp.isValid());
        write_clean_tree(tmp.path());
        write(tmp.path(), file, "#include \"" + include.toUtf8() + "\"\n");
        const check_result r = run_check(tmp.path());
        if (allowed) {
            QVERIFY2(r.exit_code == 0, qPrintable(r.output));
        } else {
            QVERIFY2(r.exit_code != 0, qPrintable(r.output));
            QVERIFY2(r.output.contains(file + ":1: " + message), qPrintable(r.output));
        }
    }
};

QTEST_GUILESS_MAIN(TestLayers)
#include "test_layers.moc"
