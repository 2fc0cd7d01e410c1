// Atomic file replacement: data goes to a temporary file beside the target, is fsync'ed, then renamed
// over the target, so a reader sees either the old file or the complete new one, never a partial one.
// On any failure (disk full, permissions) the temporary is removed and io_error names the target.
#pragma once

#include <chrono>
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
// Test hook for full-disk tests: when the environment variable LORAFLEET_TEST_FAIL_WRITE_AFTER=N is set,
// atomic writes fail with ENOSPC once N bytes have been written by this process (read once).

// ---- staging folders: whole folders (a bank, an export) written beside their target, then swapped in ----
// Every temporary of a target (file or folder) is named ".<name>.tmp-<pid>-XXXXXX" in the target's folder,
// so a later run can tell whether the process that made it is gone.

// Creates an empty staging folder (0755) for `target` (its parent is created when missing). io_error.
std::filesystem::path make_staging_dir(const std::filesystem::path& target);

// Removes the temporaries of `target` that earlier runs left behind: ".<name>.tmp-<pid>-*" whose process
// no longer exists, and any ".<name>.tmp-*" (older naming included) not modified for `max_age`. Never
// touches those of a live process younger than `max_age`. Returns how many were removed; never throws.
std::size_t remove_stale_staging(const std::filesystem::path& target,
                                 std::chrono::seconds max_age = std::chrono::hours(6));

// Puts the complete folder `staged` at `target` so that at every instant `target` is either the old
// complete folder or the new one: rename when nothing is there, else an atomic exchange
// (RENAME_EXCHANGE) after which the old folder, now at `staged`, is deleted (a crash in between leaves
// it as a stale temporary for remove_stale_staging). Flushes the parent folder. io_error.
void swap_dir_into_place(const std::filesystem::path& staged, const std::filesystem::path& target);

// fsync of every file and folder below `dir` and of `dir` itself (best effort for folders).
void sync_tree(const std::filesystem::path& dir);
void write_file_atomic(const std::filesystem::path& target, std::string_view text);

} // namespace lorafleet::io
