// lorafleet-cli: the headless front end. Dispatches to a subcommand and turns engine errors into one
// line on stderr and an exit code: 0 success, 1 bad input or failure, 2 wrong usage.
#include "app/cli/commands.hpp"
#include "engine/core/error.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <new>

namespace lorafleet::cli {

namespace {
std::vector<command>& registry() {
    static std::vector<command> commands;
    return commands;
}
} // namespace

const std::vector<command>& registered_commands() {
    return registry();
}

command_registrar::command_registrar(command c) {
    registry().push_back(std::move(c));
}

} // namespace lorafleet::cli

namespace {

void print_help() {
    auto commands = lorafleet::cli::registered_commands();
    std::sort(commands.begin(), commands.end(), [](auto& a, auto& b) { return a.name < b.name; });
    std::cout << "lorafleet-cli " LORAFLEET_VERSION " - compress and serve fleets of LoRA adapters\n\n"
                 "usage: lorafleet-cli COMMAND [ARGS...]   (lorafleet-cli COMMAND --help for details)\n\n"
                 "commands:\n";
    for (const auto& c : commands)
        std::printf("  %-12s %s\n", c.name.c_str(), c.summary.c_str());
}

} // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
        print_help();
        return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version") {
        std::cout << "lorafleet-cli " LORAFLEET_VERSION "\n";
        return 0;
    }
    const auto& commands = lorafleet::cli::registered_commands();
    auto it = std::find_if(commands.begin(), commands.end(), [&](auto& c) { return c.name == args[0]; });
    if (it == commands.end()) {
        std::cerr << "lorafleet-cli: unknown command '" << args[0] << "' (see lorafleet-cli --help)\n";
        return 2;
    }
    std::vector<std::string> rest(args.begin() + 1, args.end());
    if (std::find(rest.begin(), rest.end(), "--help") != rest.end()) {
        std::cout << it->usage;
        return 0;
    }
    try {
        return it->run(rest);
    } catch (const lorafleet::usage_error& e) {
        std::cerr << "lorafleet-cli " << it->name << ": " << e.what() << "\n" << it->usage;
        return 2;
    } catch (const lorafleet::error& e) {
        std::cerr << "lorafleet-cli " << it->name << ": error: " << e.what() << "\n";
        return 1;
    } catch (const std::bad_alloc&) {
        std::cerr << "lorafleet-cli " << it->name << ": error: out of memory\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "lorafleet-cli " << it->name << ": error: " << e.what() << "\n";
        return 1;
    }
}
