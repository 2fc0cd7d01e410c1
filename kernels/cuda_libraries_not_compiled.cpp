// cuda_libraries.hpp in a build without CUDA: nothing to load.
#include "kernels/cuda_libraries.hpp"

namespace lorafleet::kernels {

const cuda_libraries_status& cuda_math_libraries() {
    static const cuda_libraries_status status{
        false,
        "this build has no CUDA backend (configured with LORAFLEET_CUDA=OFF or nvcc not found)",
        {},
        {}};
    return status;
}

} // namespace lorafleet::kernels
