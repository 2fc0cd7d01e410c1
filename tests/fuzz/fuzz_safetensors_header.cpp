// libFuzzer entry point for the safetensors header parser. Contract under test: for ANY bytes,
// parse_safetensors_header either throws a lorafleet::error (malformed input) or returns a header whose
// promises hold (ranges sorted, contiguous, inside the input, sized numel * dtype size). Any other
// exception, a sanitizer report or a broken promise (trap) is a finding.
#include "engine/core/error.hpp"
#include "engine/io/safetensors.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lorafleet::io;
    const std::span<const std::byte> file(reinterpret_cast<const std::byte*>(data), size);
    safetensors_header h;
    try {
        h = parse_safetensors_header(file, "fuzz.safetensors");
    } catch (const lorafleet::error&) {
        return 0; // rejected: fine, as long as it is our error type
    }

    if (h.data_start < 8 || h.data_start > size) __builtin_trap();
    std::uint64_t expected = 0;
    for (const tensor_info& t : h.tensors) {
        if (t.name.empty() || t.begin != expected || t.end < t.begin) __builtin_trap();
        const std::int64_t n = t.numel();
        if (n < 0 || std::uint64_t(n) * dtype_size(t.type) != t.end - t.begin) __builtin_trap();
        if (h.data_start + t.end > size) __builtin_trap();
        expected = t.end;
        // Touch every byte of the view through the readers: ASan flags anything outside the input.
        const tensor_view view{&t, file.subspan(h.data_start + t.begin, t.end - t.begin)};
        (void)view.all_finite();
        if (is_lora_float(t.type)) { // n <= size: the bytes are in the input
            std::vector<float> out(static_cast<std::size_t>(n));
            view.to_f32(out);
        }
    }
    if (h.data_start + expected != size) __builtin_trap();
    return 0;
}
