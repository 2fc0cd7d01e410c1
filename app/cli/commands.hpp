// The subcommands of lorafleet-cli. Each cmd_*.cpp registers itself with a static command_registrar,
// so adding a command touches only its own file. A command returns the process exit code (0 ok,
// 1 bad input) and throws usage_error for a wrong command line (exit 2).
#pragma once

#include <string>
#include <vector>

namespace lorafleet::cli {

struct command {
    std::string name;
    std::string summary; // one line for `lorafleet-cli --help`
    std::string usage;   // full usage text for `lorafleet-cli NAME --help`
    int (*run)(const std::vector<std::string>& args) = nullptr;
};

const std::vector<command>& registered_commands();

struct command_registrar {
    explicit command_registrar(command c);
};

} // namespace lorafleet::cli
