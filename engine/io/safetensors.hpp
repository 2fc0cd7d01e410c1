// safetensors: a strictly validated, memory-mapped reader (zero-copy tensor views) and an atomic writer.
// Format: u64 little-endian header length N, N bytes of JSON object {name: {dtype, shape, data_offsets},
// "__metadata__": {str: str}}, then the data buffer. Invariants checked on open: N fits in the file and
// is <= 100 MB, every byte of the data buffer belongs to exactly one tensor (ranges contiguous, sorted by
// offset, no overlap, no gap, end == buffer size) and each range's size equals numel * dtype size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lorafleet::io {

enum class dtype { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

std::string_view dtype_name(dtype t);                    // "F32", "BF16", ...
std::optional<dtype> parse_dtype(std::string_view name); // nullopt for names the format does not define
std::size_t dtype_size(dtype t);                         // bytes per element
bool is_lora_float(dtype t);                             // F32, F16 or BF16: what adapter weights may use

constexpr std::uint64_t max_header_bytes = 100ull * 1000 * 1000;

struct tensor_info {
    std::string name;
    dtype type = dtype::F32;
    std::vector<std::int64_t> shape;
    std::uint64_t begin = 0; // offsets into the data buffer (after the header)
    std::uint64_t end = 0;
    std::int64_t numel() const;
};

struct safetensors_header {
    std::vector<tensor_info> tensors; // in data-offset order
    std::map<std::string, std::string> metadata;
    std::uint64_t data_start = 0; // absolute file offset of the data buffer (8 + N)
};

// Parses and validates the header of a whole safetensors file held in `file` (pure: no I/O, so it is
// the libFuzzer entry point). Throws format_error naming `path_for_errors` and the offending entry.
safetensors_header parse_safetensors_header(std::span<const std::byte> file,
                                            const std::string& path_for_errors);

// A read-only view of one tensor's bytes inside a mapped file; valid while its safetensors_file lives.
struct tensor_view {
    const tensor_info* info = nullptr;
    std::span<const std::byte> bytes;

    const std::string& name() const { return info->name; }
    dtype type() const { return info->type; }
    const std::vector<std::int64_t>& shape() const { return info->shape; }
    std::int64_t numel() const { return info->numel(); }

    // Converts F32/F16/BF16 to float32; other dtypes throw unsupported_error. `out.size()` must be numel().
    void to_f32(std::span<float> out) const;
    std::vector<float> to_f32() const;
    // True when every element is finite (F32/F16/BF16; checked on the raw bits, no conversion).
    bool all_finite() const;
};

// An open, validated, memory-mapped safetensors file. Immutable and shareable across threads.
class safetensors_file {
public:
    static std::shared_ptr<const safetensors_file> open(const std::filesystem::path& path);
    ~safetensors_file();
    safetensors_file(const safetensors_file&) = delete;
    safetensors_file& operator=(const safetensors_file&) = delete;

    const std::filesystem::path& path() const { return m_path; }
    const std::map<std::string, std::string>& metadata() const { return m_header.metadata; }
    std::size_t size() const { return m_tensors.size(); }
    const std::vector<tensor_view>& tensors() const { return m_tensors; }
    const tensor_view* find(std::string_view name) const; // nullptr when absent
    const tensor_view& at(std::string_view name) const;   // format_error when absent
    std::uint64_t file_bytes() const { return m_size; }
    // Tells the kernel that this process no longer needs the mapped pages of the whole file, or of the
    // pages tensor `t` spans (madvise MADV_DONTNEED, widened to whole pages; a view that does not lie in
    // this file's mapping is ignored). The mapping stays valid: a later read faults the same bytes in again
    // from the page cache or the file (PROT_READ + MAP_PRIVATE: no page holds a private change). Readers
    // that stream through a large fleet call it after converting what they read, so the resident set holds
    // what is in use rather than every file touched (1000 Mistral q/k/v adapters map 19 GB). Any thread;
    // a failure is ignored (it only costs memory).
    void release_pages() const noexcept;
    void release_pages(const tensor_view& t) const noexcept;

private:
    safetensors_file() = default;
    std::filesystem::path m_path;
    void* m_map = nullptr;
    std::size_t m_size = 0;
    safetensors_header m_header;
    std::vector<tensor_view> m_tensors;
    std::map<std::string, std::size_t, std::less<>> m_index;
};

// One tensor to write. `bytes.size()` must equal numel * dtype_size(type).
struct tensor_data {
    std::string name;
    dtype type = dtype::F32;
    std::vector<std::int64_t> shape;
    std::span<const std::byte> bytes;
};

// Encodes float32 values as F32, F16 or BF16 bytes (round to nearest even).
std::vector<std::byte> encode_f32(std::span<const float> values, dtype type);

// Writes a safetensors file atomically (temp file in the same folder, fsync, rename): tensors sorted by
// name, header padded with spaces to a multiple of 8 bytes. Throws io_error (disk full, permissions) and
// leaves any previous file at `path` untouched on failure.
void write_safetensors(const std::filesystem::path& path, std::vector<tensor_data> tensors,
                       const std::map<std::string, std::string>& metadata = {});

} // namespace lorafleet::io
