// Where tests find things: the source tree, the shared fixtures (../shared beside the checkout, as in
// CI; tests that need them QSKIP with a reason when they are absent) and the built CLI.
#pragma once

#include <QtTest/QtTest>

#include <cstdlib>
#include <filesystem>

namespace lorafleet::test {

// Each path can be moved at run time (LORAFLEET_TEST_SOURCE_DIR, LORAFLEET_TEST_FIXTURES_DIR,
// LORAFLEET_TEST_CLI), so test binaries built here also run from a copy elsewhere (bench/gpu_kit.sh).
inline std::filesystem::path path_from_env(const char* name, const char* built_in) {
    const char* v = std::getenv(name);
    return v != nullptr && *v != '\0' ? std::filesystem::path(v) : std::filesystem::path(built_in);
}
inline std::filesystem::path source_dir() {
    return path_from_env("LORAFLEET_TEST_SOURCE_DIR", LORAFLEET_SOURCE_DIR);
}
inline std::filesystem::path fixtures_dir() {
    return path_from_env("LORAFLEET_TEST_FIXTURES_DIR", LORAFLEET_FIXTURES_DIR);
}
// The demo model the program ships (resources/, not ../shared): present in every checkout.
inline std::filesystem::path demo_model_dir() {
    return source_dir() / "resources/models/tinystories-656k";
}
inline std::filesystem::path cli_path() {
    return path_from_env("LORAFLEET_TEST_CLI", LORAFLEET_CLI_PATH);
}

} // namespace lorafleet::test

// Skips the current test function when ../shared/fixtures is not beside the checkout.
#define LORAFLEET_REQUIRE_FIXTURES()                                                                         \
    do {                                                                                                     \
        if (!std::filesystem::exists(lorafleet::test::fixtures_dir() / "README.md"))                         \
            QSKIP("../shared/fixtures is not beside this checkout");                                         \
    } while (0)
