#!/usr/bin/env bash
# Runs on a GPU machine, from the repository root, with .gpu-kit carried (bench/gpu_kit.sh made it):
#   bash bench/gpu_kit_run.sh tests      the `gpu` tests (CUDA against the CPU on the same inputs)
#   bash bench/gpu_kit_run.sh compress   bench_compress: 1000 Mistral-7B-geometry adapters, 32 layers,
#                                        25 clusters, r 16, bf16 factors (as PEFT files hold them: the resident
#                                        cache keeps them in 16 bits) on cuda (target < 60 s), and cuda vs
#                                        cpu on 1 layer
#   bash bench/gpu_kit_run.sh serve      bench_serve_gpu: base / compressed / raw at 1..1024 adapters
#   bash bench/gpu_kit_run.sh all        the three, in that order
# Each part fits one device call (10 minutes). Logs go to $OUT (or gpu-results/): one file per part.
set -uo pipefail
root=$(pwd)
archive=$root/.gpu-kit/kit.tar.xz
[ -f "$archive" ] || { echo "no .gpu-kit/kit.tar.xz here: run bench/gpu_kit.sh, carry .gpu-kit" >&2; exit 1; }
kit=${GPU_KIT_DIR:-/tmp/lorafleet-gpu-kit}
# Unpacked once per machine (again when the archive is newer).
if [ ! -x "$kit/bin/lorafleet-cli" ] || [ "$archive" -nt "$kit/.unpacked" ]; then
    rm -rf "$kit" && mkdir -p "$kit" && xz -dc "$archive" | tar -C "$kit" -xf - && touch "$kit/.unpacked" ||
        { echo "cannot unpack $archive into $kit" >&2; exit 1; }
fi
out=${OUT:-$root/gpu-results}
mkdir -p "$out"
export LD_LIBRARY_PATH="$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LORAFLEET_TEST_SOURCE_DIR="$root" LORAFLEET_TEST_FIXTURES_DIR="$kit/fixtures"
export LORAFLEET_TEST_CLI="$kit/bin/lorafleet-cli"
# cuBLAS / cuSOLVER from the device's toolkit (the CLI's loader also searches on its own).
if [ -z "${LORAFLEET_CUDA_LIBDIR:-}" ]; then
    for d in "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x)")/../lib64" /usr/local/cuda/lib64 \
        /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
        if ls "$d"/libcublas.so* >/dev/null 2>&1; then
            export LORAFLEET_CUDA_LIBDIR=$(cd "$d" && pwd)
            break
        fi
    done
fi
bin=$kit/bin
part=${1:-all}
status=0

header() {
    echo "== $1 ($(date -u +%FT%TZ))"
    nvidia-smi -L 2>&1 | head -2
    "$bin/lorafleet-cli" devices 2>&1
    echo "LORAFLEET_CUDA_LIBDIR=${LORAFLEET_CUDA_LIBDIR:-}"
}

run_tests() {
    header tests
    local log rc
    log=$(mktemp)
    for t in kernels_test_compress_cuda kernels_test_serve_device_forward kernels_test_serve_engine_cuda kernels_test_batched_cuda kernels_test_resident_cuda kernels_test_qr_many_cuda; do
        timeout 240 "$bin/$t" >"$log" 2>&1
        rc=$?
        grep -E "^(PASS|FAIL|SKIP|XFAIL|QWARN|QINFO|Totals)|Loc:|Actual|Expected" "$log"
        echo "$t: exit $rc$([ $rc = 77 ] && echo ' (skipped: no usable device)')"
        [ $rc = 0 ] || status=1
    done
    rm -f "$log"
}

run_compress() {
    header compress
    # --in-memory: the fleet (~38 GB for 32 layers) is generated once on all cores, so the GPU run is not
    # timed against the single-thread generation of every module on every pass.
    timeout 360 "$bin/bench_compress" --backend cuda --adapters 1000 --layers 32 --clusters 25 \
        --methods jd-full --rank 16 --dense-adapters 0 --in-memory --factor-dtype bf16 2>&1 || status=1
    timeout 200 "$bin/bench_compress" --backend cuda,cpu --adapters 1000 --layers 1 --clusters 25 \
        --methods jd-full --rank 16 --dense-adapters 0 --in-memory 2>&1 || status=1
}

run_serve() {
    header serve
    timeout 540 "$bin/bench_serve_gpu" 2>&1 || status=1
}

case $part in
tests) run_tests >"$out/gpu-tests.txt" 2>&1 ;;
compress) run_compress >"$out/gpu-compress.txt" 2>&1 ;;
serve) run_serve >"$out/gpu-serve.txt" 2>&1 ;;
all)
    run_tests >"$out/gpu-tests.txt" 2>&1
    run_compress >"$out/gpu-compress.txt" 2>&1
    run_serve >"$out/gpu-serve.txt" 2>&1
    ;;
*)
    echo "usage: bench/gpu_kit_run.sh tests|compress|serve|all" >&2
    exit 2
    ;;
esac
cat "$out"/gpu-*.txt
exit $status
