// Test helper: tampered copies of a bank whose checksums are fixed up afterwards, so only the bank
// validation (not the SHA-256 check) can catch them: manifest lies on shapes, rank, method, layers and
// names, NaN / Inf values, data files and folders symlinked out of the bank. Every case names the words
// that the refusal must contain.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace lorafleet::test {

struct bank_tamper_case {
    std::string name;
    std::string needle; // part of the one-line refusal
    // Tampers the bank folder `bank` (an F32 bank of make_model_bank on q_proj/v_proj); `outside` is an
    // existing folder outside the bank for files that symlinks point to.
    std::function<void(const std::filesystem::path& bank, const std::filesystem::path& outside)> apply;
};

std::vector<bank_tamper_case> bank_tamper_cases();

// Recomputes "bytes" and "sha256" of every file the manifest lists (following symlinks, as a forger
// would), so the checksum check passes.
void refresh_bank_checksums(const std::filesystem::path& bank);

} // namespace lorafleet::test
