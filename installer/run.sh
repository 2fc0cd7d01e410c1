#!/usr/bin/env bash
# One command from a fresh clone: install the dependencies, build, and open the console on a demo
# workspace. Extra arguments go to `lorafleet` (e.g. --screenshot shot.png --tab clusters).
set -euo pipefail
cd "$(dirname "$0")/.."
installer/install-deps.sh
installer/build.sh
build_dir="${LORAFLEET_BUILD_DIR:-build}"
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
    echo "run: no display found; starting the console under Xvfb (xvfb-run)" >&2
    exec xvfb-run -a "$build_dir/app/lorafleet" --demo "$@"
fi
exec "$build_dir/app/lorafleet" --demo "$@"
