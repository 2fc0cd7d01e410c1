#!/usr/bin/env bash
# One command that installs what is missing, builds, and runs every test through CTest (GUI tests
# offscreen, GPU tests skipped when no device is usable), then fuzzes the safetensors header parser
# briefly with a clang/libFuzzer build and checks the .deb package.
set -euo pipefail
cd "$(dirname "$0")/.."
installer/install-deps.sh
installer/build.sh
build_dir="${LORAFLEET_BUILD_DIR:-build}"
export QT_QPA_PLATFORM=offscreen
ctest --test-dir "$build_dir" --output-on-failure -j 2 -LE fuzz

# libFuzzer needs clang: a second, small build of just the fuzz target.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DLORAFLEET_FUZZ=ON -DLORAFLEET_GUI=OFF \
    -DLORAFLEET_CUDA=OFF -DLORAFLEET_BENCH=OFF >/dev/null
cmake --build build-fuzz --target fuzz_safetensors_header -j "$(nproc)"
ctest --test-dir build-fuzz --output-on-failure -L fuzz
