// planted_bank: see planted_bank.hpp.
#include "tests/support/planted_bank.hpp"

#include "engine/backend/compress_backends.hpp"
#include "engine/bank/bank_builder.hpp"
#include "engine/compress/fleet_compressor.hpp"
#include "tests/support/planted_fleet.hpp"

#include <nlohmann/json.hpp>

namespace lorafleet::test {

bank::compressed_bank planted_bank(int groups, int per_group, std::int64_t rank, std::vector<int>* labels,
                                   double noise) {
    planted_fleet_options po;
    po.groups = groups;
    po.adapters_per_group = per_group;
    po.subspace_rank = rank;
    po.noise = noise;
    po.seed = 7;
    auto fleet = make_planted_fleet(po);
    compress::compress_options co;
    co.jd.rank = rank;
    co.clusters = groups;
    auto backend = backend::make_compress_backend("cpu", 1);
    const auto result = compress::compress_fleet(*fleet.source, *backend, co);
    if (labels) *labels = fleet.labels;
    std::vector<bank::adapter_record> records(result.adapter_names.size(), {"", "", int(rank)});
    return bank::bank_from_result(result, records, std::nullopt, nlohmann::json::object());
}

} // namespace lorafleet::test
