// Text helpers (see text_format.hpp).
#include "ui/common/text_format.hpp"

#include <QLocale>
#include <QRegularExpression>

#include <cmath>

namespace lorafleet::ui {

QString oneLine(const QString& text, int maxChars) {
    QString s = text.simplified();
    if (maxChars > 1 && s.size() > maxChars) s = s.left(maxChars - 1) + QChar(0x2026);
    return s;
}

QString formatBytes(quint64 bytes) {
    if (bytes < 1024) return QStringLiteral("%1 B").arg(bytes);
    return QLocale().formattedDataSize(qint64(bytes), 1, QLocale::DataSizeIecFormat);
}

QString formatError(double error) {
    if (!std::isfinite(error)) return QStringLiteral("n/a");
    if (error == 0) return QStringLiteral("0");
    const double a = std::abs(error);
    if (a < 1e-4) {
        const QLocale locale;
        return locale.toString(error, 'e', 2)
            .replace(locale.exponential(), QStringLiteral("e")); // "3.47e-13"
    }
    // Digits after the point for 3 significant ones; rounding can carry into the next decade (0.009996
    // -> 0.0100), so the decade is taken after rounding to 3 significant digits.
    const double rounded = QString::number(a, 'g', 3).toDouble(); // C locale both ways
    const int decade = int(std::floor(std::log10(rounded)));
    const int decimals = std::max(0, 2 - decade);
    return QLocale().toString(error, 'f', decimals);
}

QString formatDuration(qint64 ms) {
    if (ms < 1000) return QStringLiteral("%1 ms").arg(ms);
    if (ms < 60'000) return QStringLiteral("%1 s").arg(QLocale().toString(ms / 1000.0, 'f', 1));
    return QStringLiteral("%1 min %2 s").arg(ms / 60'000).arg((ms / 1000) % 60);
}

QString formatCount(qint64 n) {
    return QLocale().toString(n);
}

QString plural(qint64 n, const QString& singular, const QString& pluralForm) {
    return QStringLiteral("%1 %2").arg(formatCount(n), n == 1 ? singular : pluralForm);
}

} // namespace lorafleet::ui
