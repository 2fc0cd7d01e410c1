// write_strong_fleet: see strong_fleet.hpp.
#include "tests/support/strong_fleet.hpp"

#include "engine/synth/synthetic_fleet.hpp"

namespace lorafleet::test {

std::vector<std::filesystem::path> write_strong_fleet(const std::filesystem::path& dir,
                                                      const io::model_geometry& geometry, int adapters,
                                                      int groups, std::uint64_t seed, int rank) {
    synth::synth_options o;
    o.out_dir = dir;
    o.adapters = adapters;
    o.geometry = geometry;
    o.modules = {"q_proj", "v_proj", "o_proj", "down_proj"};
    o.rank = rank;
    o.alpha = 128.0 * rank;
    o.clusters = groups;
    o.noise = 0.0;
    o.dtype = io::dtype::F32;
    o.seed = seed;
    o.threads = 1;
    synth::write_synthetic_fleet(o);
    std::vector<std::filesystem::path> out;
    for (int i = 0; i < adapters; ++i)
        out.push_back(dir / synth::adapter_folder_name(i, adapters));
    return out;
}

} // namespace lorafleet::test
