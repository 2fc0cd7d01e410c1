// Where the program finds what it ships beside itself: the demo model (models/tinystories-656k) and the
// load generator's prompts (prompts/sonnets.txt). ONE lookup for the console and the CLI, so an installed
// package, a build tree inside or outside the checkout and the source tree all find the same files.
//
// Roots, in order (the first that holds the asked file wins):
//   1. $LORAFLEET_RESOURCES                      an override; it is searched first, never exclusively
//   2. <exe>/../share/lorafleet                  the installed layout (.deb: /usr/bin -> /usr/share)
//   3. <exe dir>/resources, <exe dir>/../resources, ... up to 8 levels   a build tree inside the checkout
//   4. <source dir>/resources                    the checkout this binary was configured from
// <exe> is /proc/self/exe. When nothing holds the file, resource_not_found's message lists every root
// that was tried, so an operator can see where to put it (or what to set LORAFLEET_RESOURCES to).
// Pure functions over the file system, any thread.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace lorafleet::io {

inline constexpr const char* demo_model_relative = "models/tinystories-656k";
inline constexpr const char* sonnets_relative = "prompts/sonnets.txt";

struct lookup_places {
    std::filesystem::path override_dir; // $LORAFLEET_RESOURCES ("" when unset)
    std::filesystem::path executable;   // the running program ("" when unknown)
    std::filesystem::path source_dir;   // the configured checkout ("" when not compiled in)
};

// The places of this process: the environment, /proc/self/exe and the compiled-in source dir.
lookup_places current_places();

// The roots above for `places`, in search order, without duplicates (they need not exist).
std::vector<std::filesystem::path> resource_roots(const lookup_places& places);

struct lookup_result {
    std::optional<std::filesystem::path> path;   // root / relative, absolute, when found
    std::vector<std::filesystem::path> searched; // every root tried, in order
};

// `relative` under the first root that has it (a file, or a folder for the model).
lookup_result find_resource(const std::filesystem::path& relative, const lookup_places& places);
lookup_result find_resource(const std::filesystem::path& relative);

// "NAME was not found; looked in: A, B, C (set LORAFLEET_RESOURCES to a folder holding RELATIVE)".
std::string not_found_message(const std::string& what, const std::filesystem::path& relative,
                              const lookup_result& result);

// The demo model folder (holds config.json), or nullopt.
std::optional<std::filesystem::path> find_demo_model();

// The user guide (README.md): the installed copy (<exe>/../share/doc/LoRAFleet/README.md, CMake's
// DOCDIR, or .../doc/lorafleet/), else the README.md of the checkout the build tree sits in (a folder
// above the executable holding README.md and resources/), else <source dir>/README.md. `searched` lists
// the candidate files tried.
lookup_result find_user_guide(const lookup_places& places);
lookup_result find_user_guide();

} // namespace lorafleet::io
