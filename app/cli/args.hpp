// A small, strict command-line parser for lorafleet-cli: `--name value`, `--name=value`, boolean
// switches and positionals. Anything unknown or malformed is a usage_error (exit code 2).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace lorafleet::cli {

class arg_parser {
public:
    // `options` take a value (repeatable ones collect every value); `switches` do not.
    arg_parser(std::set<std::string> options, std::set<std::string> switches);
    void parse(const std::vector<std::string>& args); // throws usage_error

    const std::vector<std::string>& positionals() const { return m_positionals; }
    bool has(const std::string& name) const;
    std::optional<std::string> get(const std::string& name) const; // last value given
    std::vector<std::string> all(const std::string& name) const;   // every value, in order
    std::string get_or(const std::string& name, const std::string& fallback) const;
    std::string required(const std::string& name) const;
    long long get_int(const std::string& name, long long fallback, long long min, long long max) const;
    double get_double(const std::string& name, double fallback, double min, double max) const;

private:
    std::set<std::string> m_options;
    std::set<std::string> m_switches;
    std::map<std::string, std::vector<std::string>> m_values;
    std::vector<std::string> m_positionals;
};

std::vector<std::string> split_list(const std::string& text, char sep = ','); // "a,b,,c" -> a b c

} // namespace lorafleet::cli
