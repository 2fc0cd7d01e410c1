// Typed errors of the engine. Everything thrown inside the engine derives from lorafleet::error and
// carries the file (or object) it is about and one line saying what was wrong; API boundaries (CLI,
// GUI, HTTP) turn them into a status line, an exit code or an error body. Never thrown across C APIs.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace lorafleet {

class error : public std::runtime_error {
public:
    // `where` is a path or an object name ("" when there is none); the message becomes "where: what".
    error(std::string where, const std::string& what)
        : std::runtime_error(where.empty() ? what : where + ": " + what), m_where(std::move(where)) {}
    const std::string& where() const noexcept { return m_where; }

private:
    std::string m_where;
};

// A file does not follow its format (truncated, lying header, bad JSON, overlapping ranges, ...).
class format_error : public error {
    using error::error;
};
// A well-formed file whose content cannot be used: NaN weights, rank mismatch, wrong base model.
class validation_error : public error {
    using error::error;
};
// Shapes that do not agree with each other or with the base model's geometry.
class shape_mismatch : public validation_error {
    using validation_error::validation_error;
};
// Valid input that this program deliberately does not handle (DoRA, pickle checkpoints, int8 weights).
class unsupported_error : public error {
    using error::error;
};
// The operating system refused (cannot open, disk full, rename failed); the message includes errno text.
class io_error : public error {
    using error::error;
};
// An operation ran past its time limit (an adapter load stuck reading its files); an io_error, since the
// usual cause is storage that stopped answering, so callers that handle io_error need no new case.
class timeout_error : public io_error {
    using io_error::io_error;
};
// A command line or API call that is wrong in itself (unknown flag, missing argument).
class usage_error : public error {
    using error::error;
};
// The user (or a callback) cancelled a long operation.
class cancelled_error : public error {
    using error::error;
};
// A backend that is not built in, or present but unusable (no GPU, driver too old).
class backend_unavailable : public error {
    using error::error;
};

inline std::string path_string(const std::filesystem::path& p) {
    return p.string();
}

} // namespace lorafleet
