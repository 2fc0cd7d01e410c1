// Runs the built lorafleet-cli in a child process and captures its exit code, stdout and stderr.
#pragma once

#include <QString>
#include <QStringList>

namespace lorafleet::test {

struct cli_result {
    int exit_code = -1;
    QString out;
    QString err;
};

cli_result run_cli(const QStringList& args, int timeout_ms = 120000);

} // namespace lorafleet::test
