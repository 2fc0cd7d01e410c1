// A synthetic PEFT fleet written to disk for the agreement and hybrid-serving tests: `adapters` adapters in
// `groups` planted clusters on q/v/o/down of `geometry`, rank `rank`, alpha 128·rank (strong enough to change
// a tiny model's greedy output), no noise, F32, seeded. Returns the adapter folders in index order.
#pragma once

#include "engine/io/hf_config.hpp"

#include <cstdint>
#include <filesystem>
#include <vector>

namespace lorafleet::test {

std::vector<std::filesystem::path> write_strong_fleet(const std::filesystem::path& dir,
                                                      const io::model_geometry& geometry, int adapters,
                                                      int groups, std::uint64_t seed, int rank);

} // namespace lorafleet::test
