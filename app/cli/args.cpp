#include "app/cli/args.hpp"

#include "engine/core/error.hpp"

#include <charconv>
#include <cmath>

namespace lorafleet::cli {

arg_parser::arg_parser(std::set<std::string> options, std::set<std::string> switches)
    : m_options(std::move(options)), m_switches(std::move(switches)) {}

void arg_parser::parse(const std::vector<std::string>& args) {
    bool only_positionals = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        if (only_positionals || a.size() < 2 || a.rfind("--", 0) != 0) {
            if (!only_positionals && a.size() >= 2 && a[0] == '-' && a != "-")
                throw usage_error("", "unknown option '" + a + "' (options start with --)");
            m_positionals.push_back(a);
            continue;
        }
        if (a == "--") {
            only_positionals = true;
            continue;
        }
        std::string name = a.substr(2);
        std::optional<std::string> value;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
        }
        if (m_switches.count(name)) {
            if (value) throw usage_error("", "--" + name + " takes no value");
            m_values[name].push_back("1");
        } else if (m_options.count(name)) {
            if (!value) {
                if (i + 1 >= args.size()) throw usage_error("", "--" + name + " needs a value");
                value = args[++i];
            }
            m_values[name].push_back(*value);
        } else {
            throw usage_error("", "unknown option --" + name);
        }
    }
}

bool arg_parser::has(const std::string& name) const {
    return m_values.count(name) != 0;
}

std::optional<std::string> arg_parser::get(const std::string& name) const {
    auto it = m_values.find(name);
    if (it == m_values.end()) return std::nullopt;
    return it->second.back();
}

std::vector<std::string> arg_parser::all(const std::string& name) const {
    auto it = m_values.find(name);
    return it == m_values.end() ? std::vector<std::string>{} : it->second;
}

std::string arg_parser::get_or(const std::string& name, const std::string& fallback) const {
    return get(name).value_or(fallback);
}

std::string arg_parser::required(const std::string& name) const {
    auto v = get(name);
    if (!v || v->empty()) throw usage_error("", "--" + name + " is required");
    return *v;
}

long long arg_parser::get_int(const std::string& name, long long fallback, long long min,
                              long long max) const {
    auto v = get(name);
    if (!v) return fallback;
    long long out = 0;
    auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || p != v->data() + v->size())
        throw usage_error("", "--" + name + " expects an integer, got '" + *v + "'");
    if (out < min || out > max)
        throw usage_error("", "--" + name + " must be between " + std::to_string(min) + " and " +
                                  std::to_string(max) + ", got " + *v);
    return out;
}

double arg_parser::get_double(const std::string& name, double fallback, double min, double max) const {
    auto v = get(name);
    if (!v) return fallback;
    double out = 0;
    auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc() || p != v->data() + v->size() || !std::isfinite(out))
        throw usage_error("", "--" + name + " expects a number, got '" + *v + "'");
    if (out < min || out > max)
        throw usage_error("", "--" + name + " must be between " + std::to_string(min) + " and " +
                                  std::to_string(max) + ", got " + *v);
    return out;
}

std::vector<std::string> split_list(const std::string& text, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : text) {
        if (c == sep) {
            if (!cur.empty()) out.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    if (!cur.empty()) out.push_back(cur);
    return out;
}

} // namespace lorafleet::cli
