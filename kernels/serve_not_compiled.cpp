// serve_kernels.hpp in a build without CUDA: the same symbols link, and every launcher returns the
// "not compiled" status, so callers report why instead of crashing. Stateless; any thread.
#include "kernels/serve_kernels.hpp"

namespace lorafleet::kernels {

namespace {

serve_status not_compiled(const char* api) {
    return {serve_not_compiled_code, api,
            "this build has no CUDA backend (LORAFLEET_CUDA=OFF or nvcc not found)"};
}

} // namespace

bool serve_kernels_compiled() {
    return false;
}

unsigned long long serve_launch_count() {
    return 0;
}
void count_serve_launches(int) {}

serve_status launch_embed(const void*, device_precision, const int*, float*, int, int, void*) {
    return not_compiled("launch_embed");
}
serve_status launch_rms_norm(const float*, const int*, const float*, float*, void*, device_precision, int,
                             int, float, void*) {
    return not_compiled("launch_rms_norm");
}
serve_status launch_rope(float*, const int*, const float*, int, int, int, void*) {
    return not_compiled("launch_rope");
}
serve_status launch_kv_write(const float*, const float*, const int*, const int*, const int*, int,
                             paged_kv_layout, void*, void*, device_precision, void*) {
    return not_compiled("launch_kv_write");
}
serve_status launch_decode_attention(const float*, const void*, const void*, device_precision, const int*,
                                     const int*, const int*, int, int, paged_kv_layout, float*, void*,
                                     void*) {
    return not_compiled("launch_decode_attention");
}
serve_status launch_swiglu(const float*, const float*, float*, void*, device_precision, std::size_t, void*) {
    return not_compiled("launch_swiglu");
}
serve_status launch_add(float*, const float*, std::size_t, void*) {
    return not_compiled("launch_add");
}
serve_status launch_add_bias(float*, const float*, int, int, void*) {
    return not_compiled("launch_add_bias");
}
serve_status launch_bank_apply(const bank_module_view&, const adapted_tokens&, const float*, float*, float*,
                               void*) {
    return not_compiled("launch_bank_apply");
}
serve_status launch_bgmv_apply(const lora_factor_desc*, device_precision, int, int, int, int, const float*,
                               float*, float*, void*) {
    return not_compiled("launch_bgmv_apply");
}
serve_status launch_sample_rows(const float*, int, int, int, const sampling_row_params*, const double*, int*,
                                double*, int*, void*) {
    return not_compiled("launch_sample_rows");
}
serve_status launch_fill_uniform(void*, device_precision, std::size_t, std::uint64_t, float, void*) {
    return not_compiled("launch_fill_uniform");
}

} // namespace lorafleet::kernels
