// libFuzzer entry point for the bank reader and its validation (read_bank / validate_bank). Input
// layout: 2 bytes little-endian manifest length M, 4 bytes little-endian cores length C, M bytes of
// manifest.json, C bytes of cores.safetensors, the rest bases/cluster-000.safetensors; written to a
// private temporary bank folder and read without checksums (a fuzzer cannot forge SHA-256). Contract:
// either a lorafleet::error, or a bank that the validation finds no problem in, whose every core and
// basis value is finite and whose tensors have the shapes the manifest promises. validate_bank never
// throws. Anything else is a finding.
#include "engine/bank/bank_format.hpp"
#include "engine/bank/bank_validation.hpp"
#include "engine/core/error.hpp"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

const std::filesystem::path& bank_dir() {
    static const std::filesystem::path dir = [] {
        std::string tmpl = (std::filesystem::temp_directory_path() / "fuzz-bank-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) std::abort();
        const auto d = std::filesystem::path(tmpl) / "bank";
        std::filesystem::create_directories(d / "bases");
        return d;
    }();
    return dir;
}

void write(const std::filesystem::path& p, const std::uint8_t* data, std::size_t size) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(size));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace lorafleet;
    if (size < 6) return 0;
    std::size_t left = size - 6;
    const std::size_t m_len = std::min<std::size_t>(data[0] | (std::size_t(data[1]) << 8), left);
    left -= m_len;
    const std::size_t c_len = std::min<std::size_t>(
        data[2] | (std::size_t(data[3]) << 8) | (std::size_t(data[4]) << 16) | (std::size_t(data[5]) << 24),
        left);
    const auto& dir = bank_dir();
    const std::uint8_t* p = data + 6;
    write(dir / "manifest.json", p, m_len);
    write(dir / "cores.safetensors", p + m_len, c_len);
    write(dir / "bases" / "cluster-000.safetensors", p + m_len + c_len, size - 6 - m_len - c_len);

    const auto problems = bank::validate_bank(dir, std::nullopt, false); // must not throw
    bank::compressed_bank b;
    try {
        bank::bank_read_options options;
        options.verify_checksums = false;
        b = bank::read_bank(dir, options);
    } catch (const error&) {
        if (problems.empty()) __builtin_trap(); // the two must agree
        return 0;
    }
    if (!problems.empty() || !bank::bank_problems(b).empty()) __builtin_trap();
    for (std::size_t m = 0; m < b.modules.size(); ++m) {
        if (b.cores[m].size() != b.adapters.size() * std::size_t(b.core_size())) __builtin_trap();
        for (float x : b.cores[m])
            if (!std::isfinite(x)) __builtin_trap();
        for (const auto& basis : b.bases[m]) {
            if (!basis.empty() && basis.u.size() != std::size_t(b.modules[m].d_out * b.rank))
                __builtin_trap();
            for (float x : basis.u)
                if (!std::isfinite(x)) __builtin_trap();
            for (float x : basis.vt)
                if (!std::isfinite(x)) __builtin_trap();
        }
    }
    return 0;
}
