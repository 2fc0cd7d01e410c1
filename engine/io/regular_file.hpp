// Opening the files an importer or loader reads (configs, safetensors, tokenizer and bank files) so that
// hostile paths cannot stall or trick it: the open never blocks (O_NONBLOCK, so a FIFO without a writer
// opens at once instead of waiting forever), and anything that is not a regular file after fstat — a FIFO,
// a socket, a character or block device such as /dev/zero, a directory — is refused before one byte is
// read. Text files are read whole up to a byte limit. Errors name the file and the problem (its kind, its
// size, the limit), never anything read from it.
// Invariant: every open_regular() result is a regular file opened O_RDONLY | O_CLOEXEC, in blocking mode
// again (a regular file never blocks on O_NONBLOCK anyway; the flag is cleared so later reads behave as
// usual).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace lorafleet::io {

// The largest JSON document (config.json, adapter_config.json, tokenizer_config.json, a bank manifest)
// a reader accepts; real ones are a few kB, a tokenizer.json a few MB.
constexpr std::uint64_t max_json_file_bytes = 16ull << 20;
// tokenizer.json / tokenizer.model: large vocabularies reach tens of MB.
constexpr std::uint64_t max_tokenizer_file_bytes = 256ull << 20;

// An owned read-only descriptor of a regular file and its size at open time. Move-only; closes on
// destruction.
class regular_file {
public:
    regular_file() = default;
    regular_file(int fd, std::uint64_t size) : m_fd(fd), m_size(size) {}
    regular_file(regular_file&& o) noexcept : m_fd(o.m_fd), m_size(o.m_size) { o.m_fd = -1; }
    regular_file& operator=(regular_file&& o) noexcept;
    regular_file(const regular_file&) = delete;
    regular_file& operator=(const regular_file&) = delete;
    ~regular_file();

    int fd() const { return m_fd; }
    std::uint64_t size() const { return m_size; }
    int release(); // gives up ownership of the descriptor

private:
    int m_fd = -1;
    std::uint64_t m_size = 0;
};

// Opens `path` (symlinks followed) without blocking and checks that it is a regular file. Throws io_error
// "cannot open: <errno text>" or "not a regular file (a FIFO / socket / device / directory)".
regular_file open_regular(const std::filesystem::path& path);

// The whole content of a regular file of at most `max_bytes` bytes. Throws what open_regular throws,
// format_error "file is N bytes, more than the L a <what> may have" when it is larger (checked on the
// size at open and again while reading, so a file that grows is refused too), io_error on a read error.
std::string read_text_file(const std::filesystem::path& path, std::uint64_t max_bytes,
                           const std::string& what = "file");

} // namespace lorafleet::io
