// eigen_strategy's names and all_positions() (compress_backend.hpp).
#include "engine/compress/compress_backend.hpp"

#include <numeric>

namespace lorafleet::compress {

const char* to_string(eigen_strategy s) {
    switch (s) {
    case eigen_strategy::automatic:
        return "automatic";
    case eigen_strategy::exact_small_gram:
        return "exact-small-gram";
    case eigen_strategy::exact_large_gram:
        return "exact-large-gram";
    case eigen_strategy::subspace:
        return "subspace";
    }
    return "?";
}

std::vector<std::size_t> all_positions(const module_batch& batch) {
    std::vector<std::size_t> p(batch.size());
    std::iota(p.begin(), p.end(), std::size_t{0});
    return p;
}

} // namespace lorafleet::compress
