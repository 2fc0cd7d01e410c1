// linalg_batched.hpp in a build without CUDA: the same symbols link, and every entry point throws
// linalg_error("not compiled") so callers report why instead of crashing. Stateless; any thread.
#include "kernels/linalg_batched.hpp"

namespace lorafleet::kernels {

namespace {

[[noreturn]] void not_compiled(const char* api) {
    throw linalg_error(api, 0,
                       "not compiled: this build has no CUDA backend (LORAFLEET_CUDA=OFF or no nvcc)");
}

} // namespace

std::size_t gemm_grouped(linalg_context&, mat_op, mat_op, float, float, const gemm_item*, std::size_t,
                         device_buffer&) {
    not_compiled("gemm_grouped");
}
std::size_t gemm_grouped_f64(linalg_context&, mat_op, mat_op, double, double, const gemm_item_f64*,
                             std::size_t, device_buffer&) {
    not_compiled("gemm_grouped_f64");
}
std::size_t syev_batched_f64(linalg_context&, std::int64_t, double*, double*, std::int64_t, device_buffer&) {
    not_compiled("syev_batched_f64");
}
std::size_t pad_identity_f64(linalg_context&, double*, std::int64_t, const std::int64_t*, std::int64_t,
                             double) {
    not_compiled("pad_identity_f64");
}
std::size_t gather_columns(linalg_context&, const float*, float*, std::int64_t, std::int64_t,
                           const std::int64_t*) {
    not_compiled("gather_columns");
}
std::size_t qr_thin_many_work_bytes(const qr_item*, std::size_t) {
    not_compiled("qr_thin_many_work_bytes");
}
std::size_t qr_thin_many(linalg_context&, const qr_item*, std::size_t, device_buffer&) {
    not_compiled("qr_thin_many");
}
std::size_t take_top_columns_f64(linalg_context&, const double*, std::int64_t, std::int64_t,
                                 const std::int64_t*, const std::int64_t*, const std::int64_t*, std::int64_t,
                                 std::int64_t, double*) {
    not_compiled("take_top_columns_f64");
}

} // namespace lorafleet::kernels
