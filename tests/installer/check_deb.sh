#!/usr/bin/env bash
# Builds the .deb with CPack from the build tree and checks what an installed console needs is in it:
# both executables, the .desktop entry (whose Exec/Icon name what is shipped), the icon, and the demo
# model and prompts the Serve tab and bench-serve use.
set -euo pipefail
build_dir="$1"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd "$build_dir" && cpack -G DEB -B "$out" >/dev/null)
deb="$(ls "$out"/lorafleet_*.deb)"
listing="$(dpkg-deb -c "$deb" | awk '{print $6}')"
for f in ./usr/bin/lorafleet ./usr/bin/lorafleet-cli ./usr/share/applications/lorafleet.desktop \
         ./usr/share/icons/hicolor/scalable/apps/lorafleet.svg \
         ./usr/share/lorafleet/prompts/sonnets.txt ./usr/share/lorafleet/models/tinystories-656k/config.json; do
    grep -qx "$f" <<<"$listing" || { echo "missing from $deb: $f"; exit 1; }
done
mkdir "$out/x" && dpkg-deb -x "$deb" "$out/x"
desktop="$out/x/usr/share/applications/lorafleet.desktop"
grep -qx "Exec=lorafleet %F" "$desktop" || { echo ".desktop Exec does not start lorafleet"; exit 1; }
grep -qx "Icon=lorafleet" "$desktop" || { echo ".desktop Icon is not lorafleet"; exit 1; }
"$out/x/usr/bin/lorafleet-cli" --version | grep -q "^lorafleet-cli " || { echo "packaged CLI does not run"; exit 1; }
dpkg-deb -f "$deb" Depends | grep -q "libqt6widgets6" || { echo "Depends lacks Qt"; exit 1; }
echo "ok: $(basename "$deb")"
