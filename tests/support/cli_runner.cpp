#include "tests/support/cli_runner.hpp"

#include "tests/support/test_paths.hpp"

#include <QProcess>

namespace lorafleet::test {

cli_result run_cli(const QStringList& args, int timeout_ms) {
    QProcess p;
    p.start(QString::fromStdString(cli_path().string()), args);
    cli_result r;
    if (!p.waitForStarted(10000)) {
        r.err = "could not start lorafleet-cli";
        return r;
    }
    if (!p.waitForFinished(timeout_ms)) {
        p.kill();
        p.waitForFinished();
        r.err = "lorafleet-cli timed out";
        return r;
    }
    r.exit_code = p.exitStatus() == QProcess::NormalExit ? p.exitCode() : -2; // -2: crashed
    r.out = QString::fromUtf8(p.readAllStandardOutput());
    r.err = QString::fromUtf8(p.readAllStandardError());
    return r;
}

} // namespace lorafleet::test
