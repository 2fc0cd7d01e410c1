// Small text helpers shared by the console's views: one-line error reasons, byte sizes, durations and
// counts in the operator's locale. Pure functions, any thread.
#pragma once

#include <QString>

#include <string_view>

namespace lorafleet::ui {

// Collapses whitespace runs (newlines included) to single spaces and trims; long texts are cut at
// `maxChars` with an ellipsis, so a reason always fits one table row.
QString oneLine(const QString& text, int maxChars = 400);

// "0 B", "812 B", "1.5 KiB", "23.4 MiB", "1.02 GiB" (IEC units, locale decimal point).
QString formatBytes(quint64 bytes);

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
