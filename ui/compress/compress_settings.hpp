// CompressSettings: what the operator chose in the compression panel, as a plain value, with its
// conversion to the engine's compress_options and to / from the workspace's "compression" JSON object:
//   {"method": "jd-full"|"jd-diag", "rank": 16, "clusters": 4 | "auto", "target_error": 0.05,
//    "normalize": "unit"|"none", "device": "auto"|"cpu"|"cuda", "seed": 2407}
// fromJson() accepts a partial or foreign object: missing or out-of-range fields take their defaults
// (a hand-edited workspace never fails to open because of this object). Any thread.
#pragma once

#include "engine/compress/fleet_compressor.hpp"

#include <QJsonObject>
#include <QString>

#include <cstdint>

namespace lorafleet::ui {

struct CompressSettings {
    compress::jd_method method = compress::jd_method::full;
    int rank = 16;
    int clusters = 1;          // fixed cluster count; 0 = automatic (smallest k meeting targetError)
    double targetError = 0.6;  // mean squared relative error aimed at by automatic k
    bool normalize = true;     // every adapter weighs the same (unit) or by its norm (none)
    QString device = "auto";   // backend name for make_compress_backend: "auto", "cpu", "cuda"
    std::uint64_t seed = 2407; // random initialisation and clustering

    static constexpr int kMaxRank = 4096;
    static constexpr int kMaxClusters = 4096;

    bool operator==(const CompressSettings&) const = default;

    compress::compress_options toOptions() const;
    QJsonObject toJson() const;
    static CompressSettings fromJson(const QJsonObject& json);
    QString methodName() const; // "jd-full" / "jd-diag"
};

} // namespace lorafleet::ui
