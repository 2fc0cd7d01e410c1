#!/usr/bin/env bash
# Installs the Debian packages LoRA Fleet builds and tests with: only the missing ones, so running it
# again is a no-op. The CUDA toolkit is optional and not installed here (the build detects nvcc).
set -euo pipefail

packages=(
    cmake ninja-build pkg-config g++ git
    qt6-base-dev qt6-svg-dev libqt6svg6 qt6-qpa-plugins
    libqcustomplot-dev libqcustomplot2.1-qt6
    nlohmann-json3-dev libopenblas-dev liblapacke-dev libsentencepiece-dev zlib1g-dev
    libicu-dev                               # Unicode classes and NFC for byte-level BPE tokenizers
    libre2-dev                               # linear-time target_modules regexes (adapter_config.json)
    clang libclang-rt-14-dev                 # libFuzzer target for the safetensors header parser
    xvfb xauth x11-utils imagemagick         # screenshots of the console under a virtual display
    dpkg-dev file                            # cpack's .deb generator (dpkg-shlibdeps)
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages present"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y --no-install-recommends "${missing[@]}"; then
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi
