#!/usr/bin/env bash
# One command that installs what is missing, builds, and runs every test through CTest (GUI tests
# offscreen, GPU tests skipped when no device is usable, the .deb checked), then the threaded engine,
# server and CLI tests again under ThreadSanitizer, then 30 s of libFuzzer on each of the safetensors
# header parser, the PEFT importer and the bank reader (a small clang build).
set -euo pipefail
cd "$(dirname "$0")/.."
installer/install-deps.sh
installer/build.sh
build_dir="${LORAFLEET_BUILD_DIR:-build}"
export QT_QPA_PLATFORM=offscreen
ctest --test-dir "$build_dir" --output-on-failure -j 2 -LE fuzz

# ThreadSanitizer: the threaded engine, server and CLI tests again in a third build (no GUI, no CUDA);
# the stress tests scale their iteration counts down (LORAFLEET_STRESS_SCALE), their watchdogs stay.
# OpenBLAS runs single-threaded there: its own thread pool synchronises by spinning on plain memory, which
# TSan (it is not instrumented) reports as races inside dscal/dgemm; our threads around it are still checked.
cmake -S . -B build-tsan -G Ninja -DLORAFLEET_SANITIZE=thread -DLORAFLEET_GUI=OFF -DLORAFLEET_CUDA=OFF \
    -DLORAFLEET_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
tsan_tests='worker_pool|thread_pool|serving_engine|serving_session|device_layer|hybrid_serving|bank_add|http|server|serve_gemm_fused|compress_prefetch|compress_ops|batched_fit_clusters|batched_linalg|fleet_passes|synthetic_model|device_memory|resident_modules|cli_serve|cli_generate|crash|hostile'
cmake --build build-tsan -j "$(nproc)" --target lorafleet-cli $(ninja -C build-tsan -t targets all |
    grep -oE '^(engine|cli)_[a-z_]*test_[a-z_]+:' | tr -d ':' | grep -E "$tsan_tests")
LORAFLEET_STRESS_SCALE=0.05 OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS="halt_on_error=1 exitcode=66 die_after_fork=0 suppressions=$PWD/tests/tsan.supp" \
    ctest --test-dir build-tsan --output-on-failure -j 2 -L 'engine|cli' -R "$tsan_tests"

# libFuzzer needs clang: a second, small build of just the fuzz targets.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DLORAFLEET_FUZZ=ON -DLORAFLEET_GUI=OFF \
    -DLORAFLEET_CUDA=OFF -DLORAFLEET_BENCH=OFF >/dev/null
cmake --build build-fuzz --target fuzz_safetensors_header fuzz_peft_import fuzz_bank_reader -j "$(nproc)"
ctest --test-dir build-fuzz --output-on-failure -L fuzz
