// linalg_device.hpp in a build without CUDA: the same symbols link, and every entry point throws
// linalg_error("not compiled") so callers report why instead of crashing. Stateless; any thread.
#include "kernels/linalg_device.hpp"

namespace lorafleet::kernels {

namespace {

[[noreturn]] void not_compiled(const char* api) {
    throw linalg_error(api, 0,
                       "not compiled: this build has no CUDA backend (LORAFLEET_CUDA=OFF or no nvcc)");
}

} // namespace

linalg_error::linalg_error(std::string api, long long code, const std::string& message)
    : std::runtime_error(api + " failed (code " + std::to_string(code) + "): " + message),
      m_api(std::move(api)), m_code(code), m_message(message) {}

bool linalg_compiled() {
    return false;
}

struct linalg_context_state {};
struct async_uploader_state {};

linalg_context::linalg_context(std::size_t, int) {
    not_compiled("linalg_context");
}
linalg_context::~linalg_context() = default;
std::size_t linalg_context::budget_bytes() const {
    return 0;
}
std::size_t linalg_context::used_bytes() const {
    return 0;
}
void linalg_context::synchronize() {
    not_compiled("synchronize");
}

device_buffer::device_buffer(linalg_context&, std::size_t) {
    not_compiled("device_buffer");
}
device_buffer::~device_buffer() = default;
device_buffer::device_buffer(device_buffer&&) noexcept = default;
device_buffer& device_buffer::operator=(device_buffer&&) noexcept = default;
void device_buffer::reserve(linalg_context&, std::size_t) {
    not_compiled("device_buffer");
}
void device_buffer::release() noexcept {}

async_uploader::async_uploader(linalg_context& ctx) : m_ctx(ctx) {
    not_compiled("async_uploader");
}
async_uploader::~async_uploader() = default;
void async_uploader::reserve(device_buffer&, std::size_t) {
    not_compiled("async_uploader");
}
void async_uploader::upload(const void*, void*, std::size_t) {
    not_compiled("async_uploader");
}
void async_uploader::gather_transposed_blocks(const float*, float*, std::int64_t, std::int64_t,
                                              const std::int64_t*, const std::int64_t*, const std::int64_t*) {
    not_compiled("async_uploader");
}
void async_uploader::after_context() {
    not_compiled("async_uploader");
}
void async_uploader::finish() {
    not_compiled("async_uploader");
}
void async_uploader::context_waits() {
    not_compiled("async_uploader");
}
void async_uploader::synchronize() {
    not_compiled("async_uploader");
}

void upload(linalg_context&, const void*, void*, std::size_t) {
    not_compiled("upload");
}
void download(linalg_context&, const void*, void*, std::size_t) {
    not_compiled("download");
}
void copy_device(linalg_context&, const void*, void*, std::size_t) {
    not_compiled("copy_device");
}
void fill_zero(linalg_context&, void*, std::size_t) {
    not_compiled("fill_zero");
}
void gemm(linalg_context&, mat_op, mat_op, std::int64_t, std::int64_t, std::int64_t, float, const float*,
          std::int64_t, const float*, std::int64_t, float, float*, std::int64_t) {
    not_compiled("gemm");
}
void gemm_strided_batched(linalg_context&, mat_op, mat_op, std::int64_t, std::int64_t, std::int64_t, float,
                          const float*, std::int64_t, std::int64_t, const float*, std::int64_t, std::int64_t,
                          float, float*, std::int64_t, std::int64_t, std::int64_t) {
    not_compiled("gemm_strided_batched");
}
void syevd(linalg_context&, std::int64_t, float*, std::int64_t, float*) {
    not_compiled("syevd");
}
void gemm_f64(linalg_context&, mat_op, mat_op, std::int64_t, std::int64_t, std::int64_t, double,
              const double*, std::int64_t, const double*, std::int64_t, double, double*, std::int64_t) {
    not_compiled("gemm_f64");
}
void syevd_f64(linalg_context&, std::int64_t, double*, std::int64_t, double*) {
    not_compiled("syevd_f64");
}
void qr_thin(linalg_context&, std::int64_t, std::int64_t, float*, std::int64_t, float*) {
    not_compiled("qr_thin");
}
void gather_transposed_blocks(linalg_context&, const float*, float*, std::int64_t, std::int64_t,
                              const std::int64_t*, const std::int64_t*, const std::int64_t*) {
    not_compiled("gather_transposed_blocks");
}
void convert_to_f32(linalg_context&, const void*, storage_type, float*, std::int64_t) {
    not_compiled("convert_to_f32");
}
void block_sum_squares(linalg_context&, const float*, std::int64_t, std::int64_t, double*) {
    not_compiled("block_sum_squares");
}
void reverse_columns(linalg_context&, const float*, std::int64_t, float*, std::int64_t, std::int64_t,
                     std::int64_t) {
    not_compiled("reverse_columns");
}

void reverse_columns_f64(linalg_context&, const double*, std::int64_t, double*, std::int64_t, std::int64_t,
                         std::int64_t) {
    not_compiled("reverse_columns_f64");
}
void widen_to_f64(linalg_context&, const float*, double*, std::int64_t) {
    not_compiled("widen_to_f64");
}
void narrow_to_f32(linalg_context&, const double*, float*, std::int64_t) {
    not_compiled("narrow_to_f32");
}

linalg_native_handles native_handles(linalg_context&) {
    not_compiled("native_handles");
}

} // namespace lorafleet::kernels
