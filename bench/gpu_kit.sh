#!/usr/bin/env bash
# Packs what a GPU session needs into .gpu-kit/kit.tar.xz (git-ignored), so that a device call runs every GPU test
# and benchmark without building there: the device image has CUDA, CMake and ninja but no Qt, OpenBLAS or
# LAPACKE, and a build there would spend the session's device time. The kit holds a Release build for
# sm_90 (H100 / H200) of the `gpu` tests, the CLI and the two GPU benchmarks (stripped), the shared
# libraries they load apart from glibc (the C++ runtime included, so an older image still runs them), and
# a copy of ../shared/fixtures (which does not travel to the device). Packed with xz: ~45 MB, which with the
# working tree stays under the device tool's 64 MiB (the libraries alone are ~100 MB unpacked).
#
#   here:    bash bench/gpu_kit.sh                  # builds in build-gpu-kit/, prints the kit's size
#   device:  run(command="bash bench/gpu_kit_run.sh tests", carry=[".gpu-kit"])   # then compress, serve
#
# cuBLAS and cuSOLVER are not in the kit: they are loaded on first use from the device's own toolkit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${GPU_KIT_BUILD:-$root/build-gpu-kit}
kit=$root/.gpu-kit
fixtures=${GPU_KIT_FIXTURES:-$root/../shared/fixtures}
[ -f "$fixtures/README.md" ] || { echo "gpu_kit: no fixtures at $fixtures (set GPU_KIT_FIXTURES)" >&2; exit 1; }

cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORAFLEET_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DLORAFLEET_BENCH=ON -DLORAFLEET_GUI=OFF >/dev/null
tests=(kernels_test_compress_cuda kernels_test_serve_device_forward kernels_test_serve_engine_cuda kernels_test_batched_cuda kernels_test_resident_cuda kernels_test_qr_many_cuda)
programs=(lorafleet-cli bench_compress bench_serve_gpu)
cmake --build "$build" --target "${tests[@]}" "${programs[@]}"

stage=$build/gpu-kit
rm -rf "$stage" "$kit"
mkdir -p "$stage/bin" "$stage/lib" "$kit"
for t in "${tests[@]}"; do cp "$build/tests/$t" "$stage/bin/"; done
cp "$build/app/lorafleet-cli" "$build/bench/bench_compress" "$build/bench/bench_serve_gpu" "$stage/bin/"
strip "$stage"/bin/*
# Every library the loader resolves for them, except glibc's own (the device's must be used).
ldd "$stage"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
    case $(basename "$lib") in
    libc.so* | libm.so* | ld-linux* | libpthread.so* | libdl.so* | librt.so* | libresolv.so*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
    esac
done
cp -r "$fixtures" "$stage/fixtures"
tar -C "$stage" -cf - bin lib fixtures | xz -T0 -6 >"$kit/kit.tar.xz"
du -sh "$stage"/* "$kit/kit.tar.xz"
echo "gpu_kit: $kit/kit.tar.xz ready (with the working tree it must stay under the device tool's 64 MiB)"
