// serve_device_model.hpp in a build without CUDA: the same symbols link; every create() returns the
// "not compiled" status, so no object ever exists and the other members are unreachable (they still
// answer "not compiled" rather than touching anything). Stateless; any thread.
#include "kernels/serve_device_model.hpp"

namespace lorafleet::kernels {

namespace {

serve_status not_compiled(const char* api) {
    return {serve_not_compiled_code, api,
            "this build has no CUDA backend (LORAFLEET_CUDA=OFF or nvcc not found)"};
}

} // namespace

struct device_transformer::state {
    device_step_stats stats;
};
struct device_bank::state {};
struct device_lora_cache::state {};

device_transformer::device_transformer(std::unique_ptr<state> s) : m(std::move(s)) {}
device_transformer::~device_transformer() = default;
serve_status device_transformer::create(const device_model_geometry&, std::unique_ptr<device_transformer>&) {
    return not_compiled("device_transformer");
}
serve_status device_transformer::create(const device_model_geometry&, device_precision,
                                        std::unique_ptr<device_transformer>&) {
    return not_compiled("device_transformer");
}
device_precision device_transformer::precision() const {
    return device_precision::fp32;
}
void device_transformer::set_graphs(bool) {}
bool device_transformer::graphs() const {
    return false;
}
const device_step_stats& device_transformer::step_stats() const {
    return m->stats;
}
void device_transformer::reset_step_stats() {}
serve_status device_transformer::finish_step() {
    return not_compiled("device_transformer::forward");
}
serve_status device_transformer::upload(const device_model_source&) {
    return not_compiled("device_transformer::upload");
}
serve_status device_transformer::randomize(std::uint64_t, float) {
    return not_compiled("device_transformer::randomize");
}
serve_status device_transformer::allocate_kv(int, int) {
    return not_compiled("device_transformer::allocate_kv");
}
int device_transformer::kv_blocks() const {
    return 0;
}
int device_transformer::kv_block_size() const {
    return 0;
}
serve_status device_transformer::forward(const device_step&, device_adapters*, float*) {
    return not_compiled("device_transformer::forward");
}
serve_status device_transformer::forward_sample(const device_step&, device_adapters*,
                                                const sampling_row_params*, const double*, int, int*) {
    return not_compiled("device_transformer::forward_sample");
}
serve_status device_transformer::run(const device_step&, device_adapters*) {
    return not_compiled("device_transformer::forward");
}
std::size_t device_transformer::device_bytes() const {
    return 0;
}
std::size_t device_transformer::weight_bytes() const {
    return 0;
}
std::size_t device_transformer::kv_pool_bytes() const {
    return 0;
}
void* device_transformer::stream() const {
    return nullptr;
}

device_bank::device_bank(std::unique_ptr<state> s) : m(std::move(s)) {}
device_bank::~device_bank() = default;
serve_status device_bank::create(int, int, int, bool, const std::vector<int>&,
                                 const std::vector<bank_module_source>&, std::unique_ptr<device_bank>&,
                                 device_precision) {
    return not_compiled("device_bank");
}
serve_status device_bank::begin_step(const int*, int, void*) {
    return not_compiled("device_bank::begin_step");
}
serve_status device_bank::begin_fixed_step(const int*, int, int, void*) {
    return not_compiled("device_bank::begin_fixed_step");
}
serve_status device_bank::apply(int, int, const float*, float*, void*) {
    return not_compiled("device_bank::apply");
}
std::size_t device_bank::device_bytes() const {
    return 0;
}
std::uint64_t device_bank::version() const {
    return 0;
}

device_lora_cache::device_lora_cache(std::unique_ptr<state> s) : m(std::move(s)) {}
device_lora_cache::~device_lora_cache() = default;
serve_status device_lora_cache::create(const device_model_geometry&, std::size_t, int, loader,
                                       std::unique_ptr<device_lora_cache>&, device_precision) {
    return not_compiled("device_lora_cache");
}
serve_status device_lora_cache::prepare(const int*, int, int* resident, void*) {
    *resident = 0;
    return not_compiled("device_lora_cache::prepare");
}
serve_status device_lora_cache::begin_step(const int*, int, void*) {
    return not_compiled("device_lora_cache::begin_step");
}
serve_status device_lora_cache::begin_fixed_step(const int*, int, int, void*) {
    return not_compiled("device_lora_cache::begin_fixed_step");
}
serve_status device_lora_cache::apply(int, int, const float*, float*, void*) {
    return not_compiled("device_lora_cache::apply");
}
std::size_t device_lora_cache::device_bytes() const {
    return 0;
}
std::uint64_t device_lora_cache::version() const {
    return 0;
}
std::uint64_t device_lora_cache::hits() const {
    return 0;
}
std::uint64_t device_lora_cache::misses() const {
    return 0;
}

} // namespace lorafleet::kernels
