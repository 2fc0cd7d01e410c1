// Recursive adapter-folder search (see adapter_discovery.hpp). Unreadable subfolders are skipped (a
// fleet folder with one locked subfolder still lists the rest); the top folder must be readable.
#include "engine/io/adapter_discovery.hpp"

#include "engine/core/error.hpp"

#include <algorithm>
#include <set>

namespace lorafleet::io {
namespace {

namespace fs = std::filesystem;

constexpr int max_depth = 64; // far deeper than any real layout; bounds the recursion

bool is_adapter_dir(const fs::path& dir) {
    std::error_code ec;
    return fs::is_regular_file(dir / "adapter_config.json", ec);
}

void search(const fs::path& dir, int depth, std::set<fs::path>& visited, std::vector<fs::path>& found) {
    std::error_code ec;
    const fs::path real = fs::canonical(dir, ec);
    if (ec || !visited.insert(real).second) return; // unresolvable, or already seen (symlink loop)
    if (is_adapter_dir(dir)) {
        found.push_back(dir);
        return;
    }
    if (depth >= max_depth) return;
    fs::directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
    if (ec) return;
    std::vector<fs::path> children;
    for (; it != fs::directory_iterator(); it.increment(ec)) {
        if (ec) break;
        const fs::path& child = it->path();
        const std::string name = child.filename().string();
        if (name.empty() || name[0] == '.') continue;
        std::error_code ec2;
        if (fs::is_directory(child, ec2)) children.push_back(child); // follows symlinks
    }
    for (const auto& c : children)
        search(c, depth + 1, visited, found);
}

} // namespace

std::vector<fs::path> find_adapter_dirs(const fs::path& path) {
    std::error_code ec;
    const auto st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw io_error(path_string(path), "no such file or folder");
    if (fs::is_regular_file(st)) {
        // An adapter's own file given directly: its folder is the adapter.
        const fs::path parent = path.has_parent_path() ? path.parent_path() : fs::path(".");
        if (path.filename() == "adapter_config.json" ||
            (path.filename() == "adapter_model.safetensors" && is_adapter_dir(parent)))
            return {parent};
        throw validation_error(path_string(path), "not a PEFT adapter folder (no adapter_config.json here)");
    }
    if (!fs::is_directory(st)) throw validation_error(path_string(path), "neither a file nor a folder");
    if (is_adapter_dir(path)) return {path};

    fs::directory_iterator probe(path, ec);
    if (ec) throw io_error(path_string(path), "cannot read folder: " + ec.message());
    std::set<fs::path> visited;
    std::vector<fs::path> found;
    search(path, 0, visited, found);
    if (found.empty()) throw validation_error("", "no PEFT adapters found under " + path_string(path));
    std::sort(found.begin(), found.end());
    return found;
}

} // namespace lorafleet::io
