#!/usr/bin/env bash
# Prices every case of cases.txt three ways with `ms plan` — data parallel (`step_dp`),
# Megatron's tensor parallelism from `shard` hints (`step_tp`) and the planner's choice
# (`step_auto`) — and prints one markdown row per case: the estimated time per step and
# the peak memory per device of each, and the planner's plan in words.
# Usage: bash bench/parallel/run.sh [path/to/ms]   (default: target/release/ms)
set -euo pipefail
cd "$(dirname "$0")/../.."
ms=${1:-target/release/ms}
est() { # file args devices profile cap fn -> "µs peakMiB" or "-"
    local file=$1 args=$2 n=$3 prof=$4 cap=$5 fn=$6 capflag=()
    [ "$cap" != "-" ] && capflag=(--mem-cap "$cap")
    local out
    # shellcheck disable=SC2086
    if ! out=$("$ms" plan "bench/parallel/$file" --fn "$fn" --devices "$n" --profile "$prof" "${capflag[@]}" -- $args 2>&1); then
        echo "error: $(echo "$out" | grep -m1 -o 'Error: .*' || echo "$out" | tail -1)"
        return
    fi
    local us peak note
    us=$(echo "$out" | grep -o '= [0-9.]* µs' | tail -1 | tr -d '= µs')
    peak=$(echo "$out" | grep -o 'peak memory [0-9]*' | tail -1 | awk '{printf "%.1f", $3/1048576}')
    echo "$us µs, $peak MiB"
}
echo "| case | devices | profile | cap | data parallel | Megatron (hints) | planner | planner's plan |"
echo "|---|---|---|---|---|---|---|---|"
grep -v '^#' bench/parallel/cases.txt | while IFS='|' read -r name file args n prof cap; do
    name=$(echo $name); file=$(echo $file); args=$(echo $args); n=$(echo $n); prof=$(echo $prof); cap=$(echo $cap)
    [ -z "$name" ] && continue
    dp=$(est "$file" "$args" "$n" "$prof" "$cap" step_dp)
    tp=$(est "$file" "$args" "$n" "$prof" "$cap" step_tp)
    au=$(est "$file" "$args" "$n" "$prof" "$cap" step_auto)
    capflag=(); [ "$cap" != "-" ] && capflag=(--mem-cap "$cap")
    # shellcheck disable=SC2086
    plan=$("$ms" plan "bench/parallel/$file" --fn step_auto --devices "$n" --profile "$prof" "${capflag[@]}" -- $args 2>/dev/null \
        | awk '/^inputs:/{f=1;next} /^ +#/{f=0} f' | grep -c 'split:' || true)
    mesh=$("$ms" plan "bench/parallel/$file" --fn step_auto --devices "$n" --profile "$prof" "${capflag[@]}" -- $args 2>/dev/null \
        | grep -o '(mesh [0-9x]*' | tr -d '(' || true)
    echo "| $name | $n | $prof | $cap | $dp | $tp | $au | $mesh, $plan inputs split |"
done
