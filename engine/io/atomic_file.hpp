// Atomic file replacement: data goes to a temporary file beside the target, is fsync'ed, then renamed
// over the target, so a reader sees either the old file or the complete new one, never a partial one.
// On any failure (disk full, permissions) the temporary is removed and io_error names the target.
#pragma once

#include <cstddef>
#include <filesystem>
#include <span>
#include <string_view>

namespace lorafleet::io {

class atomic_file_writer {
public:
    explicit atomic_file_writer(std::filesystem::path target);
    ~atomic_file_writer(); // discards the temporary unless commit() succeeded
    atomic_file_writer(const atomic_file_writer&) = delete;
    atomic_file_writer& operator=(const atomic_file_writer&) = delete;

    void write(std::span<const std::byte> data);
    void write(std::string_view text);
    void commit(); // flush, fsync, rename over the target, fsync the folder

    const std::filesystem::path& target() const { return m_target; }

private:
    std::filesystem::path m_target;
    std::filesystem::path m_temp;
    int m_fd = -1;
    bool m_committed = false;
};

void write_file_atomic(const std::filesystem::path& target, std::span<const std::byte> data);
void write_file_atomic(const std::filesystem::path& target, std::string_view text);

} // namespace lorafleet::io
