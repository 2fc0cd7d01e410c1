// module_batch validation and the owning constructor (see module_batch.hpp for the layout contract).
#include "engine/compress/module_batch.hpp"

#include "engine/core/error.hpp"

namespace lorafleet::compress {

void module_batch::validate() const {
    if (d_out <= 0 || d_in <= 0)
        throw shape_mismatch(name, "module shape " + std::to_string(d_out) + "x" + std::to_string(d_in));
    for (const auto& f : adapters) {
        const std::string who = "adapter " + std::to_string(f.adapter);
        if (f.rank <= 0) throw shape_mismatch(name, who + ": rank " + std::to_string(f.rank));
        if (static_cast<std::int64_t>(f.a.size()) != f.rank * d_in)
            throw shape_mismatch(name, who + ": lora_A has " + std::to_string(f.a.size()) +
                                           " values, expected " + std::to_string(f.rank) + "x" +
                                           std::to_string(d_in));
        if (static_cast<std::int64_t>(f.b.size()) != d_out * f.rank)
            throw shape_mismatch(name, who + ": lora_B has " + std::to_string(f.b.size()) +
                                           " values, expected " + std::to_string(d_out) + "x" +
                                           std::to_string(f.rank));
    }
    if (!norms2.empty() && norms2.size() != adapters.size())
        throw shape_mismatch(name, "norms2 cache has " + std::to_string(norms2.size()) + " entries for " +
                                       std::to_string(adapters.size()) + " adapters");
}

module_batch make_owned_module_batch(std::string name, std::int64_t d_out, std::int64_t d_in,
                                     std::vector<owned_factors> factors) {
    auto owned = std::make_shared<std::vector<owned_factors>>(std::move(factors));
    module_batch batch;
    batch.name = std::move(name);
    batch.d_out = d_out;
    batch.d_in = d_in;
    batch.adapters.reserve(owned->size());
    for (const auto& f : *owned)
        batch.adapters.push_back(
            {f.adapter, f.rank, std::span<const float>(f.a), std::span<const float>(f.b)});
    batch.storage = owned;
    batch.validate();
    return batch;
}

} // namespace lorafleet::compress
