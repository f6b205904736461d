#!/usr/bin/env bash
# Prices every case of cases.txt four ways with `ms plan` — data parallel (`step_dp`),
# Megatron's tensor parallelism from `shard` hints (`step_tp`), the best data × tensor grid
# and the planner's choice (`step_auto`) — and prints one markdown row per case: the
# estimated time per step and the peak memory per device of each, and the planner's plan
# in words. A grid of d × t devices (d, t ≥ 2, d·t the case's devices) splits what data
# parallelism splits (the batch) over mesh axis m0 and what Megatron's hints split (the
# weights, by columns then rows) over m1; each grid is written as a plan file and priced
# with `ms plan --plan`, and the cheapest within the memory cap is reported.
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
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
grid() { # file args devices profile cap -> "µs peakMiB (dxt)" of the cheapest grid, or "-"
    local file=$1 args=$2 n=$3 prof=$4 cap=$5 capflag=() best="-" best_us=""
    [ "$cap" != "-" ] && capflag=(--mem-cap "$cap")
    # shellcheck disable=SC2086
    "$ms" plan "bench/parallel/$file" --fn step_dp --devices 2 --profile "$prof" --save "$tmp/dp.plan" -- $args >/dev/null 2>&1 || { echo "-"; return; }
    # shellcheck disable=SC2086
    "$ms" plan "bench/parallel/$file" --fn step_tp --devices 2 --profile "$prof" --save "$tmp/tp.plan" -- $args >/dev/null 2>&1 || { echo "-"; return; }
    local d t out us peak over
    for d in $(seq 2 $((n / 2))); do
        [ $((n % d)) -eq 0 ] || continue
        t=$((n / d))
        python3 - "$tmp/dp.plan" "$tmp/tp.plan" "$d" "$t" > "$tmp/grid.plan" <<'PY'
import re, sys
def inputs(path):
    out = {}
    for line in open(path):
        m = re.match(r"input (\d+) (\S+\[.*?\]) \[(.*)\]\s*$", line.strip())
        if m:
            axes = [a.strip() for a in m.group(3).split(",")] if m.group(3).strip() else []
            out[int(m.group(1))] = (m.group(2), axes)
    return out
dp, tp = inputs(sys.argv[1]), inputs(sys.argv[2])
print(f"mesh {sys.argv[3]}x{sys.argv[4]}")
for i in sorted(dp):
    ty, batch = dp[i]
    weights = tp.get(i, (ty, ["-"] * len(batch)))[1]
    axes = ["m0" if b == "m0" else ("m1" if w == "m0" else "-") for b, w in zip(batch, weights)]
    print(f"input {i} {ty} [{', '.join(axes)}]")
PY
        # shellcheck disable=SC2086
        out=$("$ms" plan "bench/parallel/$file" --fn step_auto --devices "$n" --profile "$prof" "${capflag[@]}" --plan "$tmp/grid.plan" -- $args 2>&1) || continue
        us=$(echo "$out" | grep -o '= [0-9.]* µs' | tail -1 | tr -d '= µs')
        peak=$(echo "$out" | grep -o 'peak memory [0-9]*' | tail -1 | awk '{print $3}')
        [ -n "$us" ] || continue
        over=0
        if [ "$cap" != "-" ]; then
            over=$(python3 -c "import sys; u={'KiB':2**10,'MiB':2**20,'GiB':2**30}; c=sys.argv[1]; print(int(int(sys.argv[2]) > float(c[:-3])*u[c[-3:]]))" "$cap" "$peak")
        fi
        [ "$over" = 0 ] || continue
        if [ -z "$best_us" ] || python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$us" "$best_us"; then
            best_us=$us
            best="$us µs, $(awk -v p="$peak" 'BEGIN{printf "%.1f", p/1048576}') MiB (${d}x${t})"
        fi
    done
    echo "$best"
}
echo "| case | devices | profile | cap | data parallel | Megatron (hints) | best data × tensor grid | planner | planner's plan |"
echo "|---|---|---|---|---|---|---|---|---|"
grep -v '^#' bench/parallel/cases.txt | while IFS='|' read -r name file args n prof cap; do
    name=$(echo $name); file=$(echo $file); args=$(echo $args); n=$(echo $n); prof=$(echo $prof); cap=$(echo $cap)
    [ -z "$name" ] && continue
    dp=$(est "$file" "$args" "$n" "$prof" "$cap" step_dp)
    tp=$(est "$file" "$args" "$n" "$prof" "$cap" step_tp)
    gr=$(grid "$file" "$args" "$n" "$prof" "$cap")
    au=$(est "$file" "$args" "$n" "$prof" "$cap" step_auto)
    capflag=(); [ "$cap" != "-" ] && capflag=(--mem-cap "$cap")
    # shellcheck disable=SC2086
    plan=$("$ms" plan "bench/parallel/$file" --fn step_auto --devices "$n" --profile "$prof" "${capflag[@]}" -- $args 2>/dev/null \
        | awk '/^inputs:/{f=1;next} /^ +#/{f=0} f' | grep -c 'split:' || true)
    mesh=$("$ms" plan "bench/parallel/$file" --fn step_auto --devices "$n" --profile "$prof" "${capflag[@]}" -- $args 2>/dev/null \
        | grep -o '(mesh [0-9x]*' | tr -d '(' || true)
    echo "| $name | $n | $prof | $cap | $dp | $tp | $gr | $au | $mesh, $plan inputs split |"
done
