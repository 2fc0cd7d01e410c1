// Finding PEFT adapter folders on disk: a folder holding adapter_config.json is one adapter; any other
// folder is searched recursively for such folders. The search skips hidden folders (".git", ".cache"),
// follows symlinks but visits each real folder once (so symlink loops end), and does not descend into
// an adapter folder. Results are sorted by path, so listings and fleets are reproducible.
#pragma once

#include <filesystem>
#include <vector>

namespace lorafleet::io {

// `path` may be an adapter folder, a folder of adapters (at any depth), or an adapter's
// adapter_config.json. Throws io_error when `path` does not exist (or the top folder cannot be read)
// and validation_error("no PEFT adapters found under ...") when the search finds none.
std::vector<std::filesystem::path> find_adapter_dirs(const std::filesystem::path& path);

} // namespace lorafleet::io
