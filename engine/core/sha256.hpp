// SHA-256 (FIPS 180-4), used for the per-file checksums of a compressed bank. Incremental: feed any
// number of byte ranges, then take the digest once.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

namespace lorafleet {

class sha256 {
public:
    sha256();
    void update(std::span<const std::byte> data);
    void update(std::string_view text) { update(std::as_bytes(std::span(text.data(), text.size()))); }
    std::array<std::uint8_t, 32> digest(); // finishes the hash; call once
    std::string hex_digest();              // 64 lowercase hex characters

private:
    void block(const std::uint8_t* p);
    std::array<std::uint32_t, 8> m_h;
    std::array<std::uint8_t, 64> m_buf{};
    std::size_t m_buf_len = 0;
    std::uint64_t m_total = 0; // bytes fed so far
};

std::string sha256_hex(std::span<const std::byte> data);
std::string sha256_file_hex(const std::filesystem::path& path); // io_error when unreadable

} // namespace lorafleet
