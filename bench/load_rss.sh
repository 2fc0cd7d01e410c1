#!/usr/bin/env bash
# Peak host RSS of loading a model and generating a few tokens on the CPU, per --dtype, against the
# checkpoint's size on disk (issue 14 item 1: weights held in their stored precision, a model needs its
# checkpoint's bytes of RAM, not twice that). Prints a table; no pass/fail.
#
#   bash bench/load_rss.sh CLI MODEL_DIR [DTYPE...]      # DTYPE: auto (default list: auto float32)
#   e.g. lorafleet-cli synth-model --geometry tinyllama-1.1b --dtype bf16 --out /tmp/tl11
#        bash bench/load_rss.sh build/app/lorafleet-cli /tmp/tl11 auto float32
#
# Needs GNU time (/usr/bin/time -v). RSS counts the mapped checkpoint pages the run touched plus the heap.
set -euo pipefail
cli=${1:?usage: load_rss.sh CLI MODEL_DIR [DTYPE...]}
model=${2:?usage: load_rss.sh CLI MODEL_DIR [DTYPE...]}
shift 2
dtypes=("$@")
[ ${#dtypes[@]} -gt 0 ] || dtypes=(auto float32)
ckpt=$(find "$model" -maxdepth 1 -name '*.safetensors' -printf '%s\n' | awk '{s += $1} END {print s}')
printf '%-10s %14s %14s %8s %8s\n' dtype checkpoint_MB peak_rss_MB ratio wall_s
for dt in "${dtypes[@]}"; do
    log=$(mktemp)
    /usr/bin/time -v "$cli" generate --model "$model" --prompt "Once upon a time" --max-tokens 4 \
        --dtype "$dt" >/dev/null 2>"$log"
    rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$log")
    wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$log")
    awk -v d="$dt" -v c="$ckpt" -v r="$rss_kb" -v w="$wall" \
        'BEGIN {printf "%-10s %14.0f %14.0f %8.2f %8s\n", d, c / 1e6, r * 1024 / 1e6, r * 1024 / c, w}'
    rm -f "$log"
done
