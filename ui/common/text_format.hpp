// Small text helpers shared by the console's views: one-line error reasons, byte sizes, compression
// errors, durations and counts in the operator's locale. Every view formats a size with formatBytes and a
// compression error with formatError, so the same number reads the same on every tab. Pure functions,
// any thread.
#pragma once

#include <QString>

#include <string_view>

namespace lorafleet::ui {

// Collapses whitespace runs (newlines included) to single spaces and trims; long texts are cut at
// `maxChars` with an ellipsis, so a reason always fits one table row.
QString oneLine(const QString& text, int maxChars = 400);

// THE size format: "0 B", "812 B", "1.5 KiB", "23.4 MiB", "1.0 GiB" (IEC units: 1 MiB = 1,048,576 bytes,
// one decimal, locale decimal point).
QString formatBytes(quint64 bytes);

// THE compression-error format: a relative squared error as a fraction with 3 significant digits,
// "0.400", "0.00347", "1.23"; "0" for an exact fit; below 1e-4 in scientific notation ("3.47e-13") so tiny
// errors of exact fits stay short; "n/a" for NaN / infinity.
QString formatError(double error);

// "850 ms", "2.4 s", "1 min 12 s".
QString formatDuration(qint64 ms);

// "1,234" with the locale's group separator.
QString formatCount(qint64 n);

// Latin-1 / ASCII engine names (dtype names, module names) as QString.
inline QString latin1(std::string_view s) {
    return QString::fromLatin1(s.data(), qsizetype(s.size()));
}

// "1 adapter", "5,000 adapters".
QString plural(qint64 n, const QString& singular, const QString& pluralForm);

} // namespace lorafleet::ui
