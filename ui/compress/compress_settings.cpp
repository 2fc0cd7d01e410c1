// CompressSettings (see compress_settings.hpp).
#include "ui/compress/compress_settings.hpp"

#include <QStringList>

#include <cmath>

namespace lorafleet::ui {

compress::compress_options CompressSettings::toOptions() const {
    compress::compress_options o;
    o.jd.method = method;
    o.jd.rank = rank;
    o.jd.norm = normalize ? compress::normalization::unit : compress::normalization::none;
    o.jd.seed = seed;
    o.clusters = clusters;
    o.target_error = targetError;
    return o;
}

QString CompressSettings::methodName() const {
    return QString::fromLatin1(compress::to_string(method));
}

QJsonObject CompressSettings::toJson() const {
    QJsonObject o;
    o.insert("method", methodName());
    o.insert("rank", rank);
    o.insert("clusters", clusters == 0 ? QJsonValue(QStringLiteral("auto")) : QJsonValue(clusters));
    o.insert("target_error", targetError);
    o.insert("normalize", normalize ? QStringLiteral("unit") : QStringLiteral("none"));
    o.insert("device", device);
    // JSON numbers are doubles: the seed is kept exactly as a decimal string.
    o.insert("seed", QString::number(seed));
    return o;
}

CompressSettings CompressSettings::fromJson(const QJsonObject& json) {
    CompressSettings s;
    if (json.value("method").toString() == QLatin1String(compress::to_string(compress::jd_method::diag)))
        s.method = compress::jd_method::diag;
    const int rank = json.value("rank").toInt(s.rank);
    if (rank >= 1 && rank <= kMaxRank) s.rank = rank;
    const QJsonValue clusters = json.value("clusters");
    if (clusters.toString() == QLatin1String("auto"))
        s.clusters = 0;
    else if (clusters.isDouble() && clusters.toInt() >= 1 && clusters.toInt() <= kMaxClusters)
        s.clusters = clusters.toInt();
    const double target = json.value("target_error").toDouble(s.targetError);
    if (std::isfinite(target) && target > 0.0 && target <= 1.0) s.targetError = target;
    if (json.value("normalize").toString() == QLatin1String("none")) s.normalize = false;
    const QString device = json.value("device").toString();
    if (QStringList{"auto", "cpu", "cuda"}.contains(device)) s.device = device;
    bool ok = false;
    const std::uint64_t seed = json.value("seed").toString().toULongLong(&ok);
    if (ok) s.seed = seed;
    return s;
}

} // namespace lorafleet::ui
