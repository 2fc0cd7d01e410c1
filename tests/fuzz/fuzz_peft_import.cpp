// libFuzzer entry point for the PEFT importer (load_peft_adapter: adapter_config.json + safetensors
// together). Input layout: 2 bytes little-endian config length L, L bytes of adapter_config.json, the
// rest adapter_model.safetensors; both are written to a private temporary folder and loaded. Contract:
// either a lorafleet::error, or an adapter whose promises hold: at least one module, every module
// placeable (0 <= layer < 2^20, a clean path), A [r, d_in] / B [d_out, r], and every value that would
// enter a bank (A and scale * B in float32) finite. Anything else (another exception, a sanitizer
// report, a broken promise: trap) is a finding.
#include "engine/core/error.hpp"
#include "engine/io/peft_adapter.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

const std::filesystem::path& work_dir() {
    static const std::filesystem::path dir = [] {
        std::string tmpl = (std::filesystem::temp_directory_path() / "fuzz-peft-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) std::abort();
        std::filesystem::create_directories(std::filesystem::path(tmpl) / "adapter");
        return std::filesystem::path(tmpl) / "adapter";
    }();
    return dir;
}

void write(const std::filesystem::path& p, const std::uint8_t* data, std::size_t size) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lorafleet::io;
    if (size < 2) return 0;
    const std::size_t config_len = std::min<std::size_t>(data[0] | (std::size_t(data[1]) << 8), size - 2);
    const auto& dir = work_dir();
    write(dir / "adapter_config.json", data + 2, config_len);
    write(dir / "adapter_model.safetensors", data + 2 + config_len, size - 2 - config_len);
    peft_adapter a;
    try {
        a = load_peft_adapter(dir);
    } catch (const lorafleet::error&) {
        return 0;
    }
    if (a.modules.empty()) __builtin_trap();
    for (const auto& m : a.modules) {
        if (!module_path_problem(m.path).empty() || m.layer < 0 || m.layer >= max_layer_index)
            __builtin_trap();
        if (m.a.shape() != std::vector<std::int64_t>{m.rank, m.d_in}) __builtin_trap();
        if (m.b.shape() != std::vector<std::int64_t>{m.d_out, m.rank}) __builtin_trap();
        const auto f = m.factors_f32();
        for (float x : f.a)
            if (!std::isfinite(x)) __builtin_trap();
        for (float x : f.b)
            if (!std::isfinite(x)) __builtin_trap();
    }
    return 0;
}
