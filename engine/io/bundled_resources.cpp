// The bundled-resource lookup (see bundled_resources.hpp).
#include "engine/io/bundled_resources.hpp"

#include <algorithm>
#include <cstdlib>
#include <system_error>

namespace fs = std::filesystem;

namespace lorafleet::io {

lookup_places current_places() {
    lookup_places p;
    if (const char* env = std::getenv("LORAFLEET_RESOURCES"); env && *env) p.override_dir = env;
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) p.executable = exe;
#ifdef LORAFLEET_SOURCE_DIR
    p.source_dir = LORAFLEET_SOURCE_DIR;
#endif
    return p;
}

std::vector<fs::path> resource_roots(const lookup_places& places) {
    std::vector<fs::path> roots;
    const auto add = [&roots](const fs::path& p) {
        if (p.empty()) return;
        const fs::path clean = p.lexically_normal();
        if (std::find(roots.begin(), roots.end(), clean) == roots.end()) roots.push_back(clean);
    };
    add(places.override_dir);
    if (!places.executable.empty()) {
        const fs::path exeDir = fs::absolute(places.executable).parent_path();
        add(exeDir.parent_path() / "share/lorafleet");
        fs::path dir = exeDir;
        for (int up = 0; up < 8; ++up) {
            add(dir / "resources");
            if (!dir.has_parent_path() || dir.parent_path() == dir) break;
            dir = dir.parent_path();
        }
    }
    if (!places.source_dir.empty()) add(places.source_dir / "resources");
    return roots;
}

lookup_result find_resource(const fs::path& relative, const lookup_places& places) {
    lookup_result r;
    for (const auto& root : resource_roots(places)) {
        r.searched.push_back(root);
        std::error_code ec;
        const fs::path candidate = root / relative;
        if (fs::exists(candidate, ec) && !ec) {
            r.path = fs::absolute(candidate, ec).lexically_normal();
            if (ec) r.path = candidate;
            return r;
        }
    }
    return r;
}

lookup_result find_resource(const fs::path& relative) {
    return find_resource(relative, current_places());
}

std::string not_found_message(const std::string& what, const fs::path& relative,
                              const lookup_result& result) {
    std::string out = what + " was not found; looked in: ";
    for (std::size_t i = 0; i < result.searched.size(); ++i)
        out += (i ? ", " : "") + (result.searched[i] / relative).string();
    if (result.searched.empty()) out += "(nowhere: no executable path and no LORAFLEET_RESOURCES)";
    return out + " (set LORAFLEET_RESOURCES to a folder holding " + relative.string() + ")";
}

std::optional<fs::path> find_demo_model() {
    const auto r = find_resource(fs::path(demo_model_relative) / "config.json");
    if (!r.path) return std::nullopt;
    return r.path->parent_path();
}

lookup_result find_user_guide(const lookup_places& places) {
    std::vector<fs::path> candidates;
    if (!places.executable.empty()) {
        const fs::path exeDir = fs::absolute(places.executable).parent_path();
        candidates.push_back(exeDir.parent_path() / "share/doc/LoRAFleet/README.md");
        candidates.push_back(exeDir.parent_path() / "share/doc/lorafleet/README.md");
        fs::path dir = exeDir;
        for (int up = 0; up < 8; ++up) {
            std::error_code ec;
            if (fs::is_directory(dir / "resources", ec)) candidates.push_back(dir / "README.md");
            if (!dir.has_parent_path() || dir.parent_path() == dir) break;
            dir = dir.parent_path();
        }
    }
    if (!places.source_dir.empty()) candidates.push_back(places.source_dir / "README.md");
    lookup_result r;
    for (const auto& c : candidates) {
        const fs::path clean = c.lexically_normal();
        if (std::find(r.searched.begin(), r.searched.end(), clean) != r.searched.end()) continue;
        r.searched.push_back(clean);
        std::error_code ec;
        if (fs::is_regular_file(clean, ec)) {
            r.path = clean;
            return r;
        }
    }
    return r;
}

lookup_result find_user_guide() {
    return find_user_guide(current_places());
}

} // namespace lorafleet::io
