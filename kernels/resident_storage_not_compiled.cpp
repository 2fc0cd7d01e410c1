// resident_storage.hpp in a build without CUDA: the same symbols link, and every entry point throws
// linalg_error("not compiled") so callers report why instead of crashing. Stateless; any thread.
#include "kernels/resident_storage.hpp"

namespace lorafleet::kernels {

namespace {

[[noreturn]] void not_compiled(const char* api) {
    throw linalg_error(api, 0,
                       "not compiled: this build has no CUDA backend (LORAFLEET_CUDA=OFF or no nvcc)");
}

} // namespace

void narrow_f32(linalg_context&, const float*, device_precision, void*, std::int64_t) {
    not_compiled("narrow_f32");
}
void widen_to_f32(linalg_context&, const void*, device_precision, float*, std::int64_t) {
    not_compiled("widen_to_f32");
}

} // namespace lorafleet::kernels
