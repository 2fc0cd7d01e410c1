#!/usr/bin/env bash
# Configures and builds LoRA Fleet in ./build (Ninja, RelWithDebInfo). Extra arguments go to CMake,
# e.g. -DLORAFLEET_CUDA=OFF or -DLORAFLEET_SANITIZE="address;undefined" (use a separate build dir).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${LORAFLEET_BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -G Ninja "$@"
cmake --build "$build_dir" -j "$(nproc)"
