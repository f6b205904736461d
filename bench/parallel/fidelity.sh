#!/usr/bin/env bash
# Cost-model fidelity (issue 9): does the planner's estimate rank plans as they really run?
# The training step of bench/parallel/speedup.ms on `--devices cpu:2` (one thread each)
# under 18 plans — the first two weights each whole, split by rows or by columns, and the
# batch split or whole — written as plan files (`ms plan --save`, edited) and each
#   - priced by `ms plan --plan` on the `cpu` profile, and
#   - run with `ms --plan step=FILE` (the median of ROUNDS runs, 3 by default).
# Prints each plan's estimate and measured time per step, then Kendall's τ between them.
# Usage: bash bench/parallel/fidelity.sh [path/to/ms]
set -euo pipefail
cd "$(dirname "$0")/../.."
ms=${1:-target/release/ms}
rounds=${ROUNDS:-3}
steps=${STEPS:-10}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
script=bench/parallel/speedup.ms
"$ms" plan "$script" --fn step --devices 2 --save "$tmp/base.plan" -- --steps 1 >/dev/null
rows=()
for w1 in "[-, -]" "[m0, -]" "[-, m0]"; do
    for w2 in "[-, -]" "[m0, -]" "[-, m0]"; do
        for x in split whole; do
            name="w1 $w1 w2 $w2 batch $x"
            f="$tmp/plan-${#rows[@]}"
            if [ "$x" = split ]; then xl="[m0, -]"; yl="[m0]"; else xl="[-, -]"; yl="[-]"; fi
            sed -e "s/^input \([0-9]*\) f32\[784, 1024\] .*/input \1 f32[784, 1024] $w1/" \
                -e "s/^input \([0-9]*\) f32\[1024, 1024\] .*/input \1 f32[1024, 1024] $w2/" \
                -e "s/^input \([0-9]*\) f32\[512, 784\] .*/input \1 f32[512, 784] $xl/" \
                -e "s/^input \([0-9]*\) i64\[512\] \[m0\]/input \1 i64[512] $yl/" \
                "$tmp/base.plan" > "$f"
            est=$("$ms" plan "$script" --fn step --devices 2 --plan "$f" -- --steps 1 \
                | grep -o '= [0-9.]* µs' | tr -d '= µs')
            runs=""
            for _ in $(seq "$rounds"); do
                r=$("$ms" --threads 2 --devices cpu:2 --plan "step=$f" "$script" --steps "$steps" \
                    | awk '/^steps\/s/ {print 1e6 / $2}')
                runs="$runs $r"
            done
            med=$(echo $runs | tr ' ' '\n' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
            rows+=("$name|$est|$med")
        done
    done
done
printf '%s\n' "${rows[@]}" | python3 -c '
import sys
rows = [l.rstrip("\n").split("|") for l in sys.stdin if l.strip()]
print("| plan | estimated µs/step | measured µs/step (median) |")
print("|---|---|---|")
for n, e, m in rows:
    print(f"| {n} | {float(e):.0f} | {float(m):.0f} |")
est = [float(r[1]) for r in rows]
mea = [float(r[2]) for r in rows]
conc = disc = 0
for i in range(len(rows)):
    for j in range(i + 1, len(rows)):
        s = (est[i] - est[j]) * (mea[i] - mea[j])
        if s > 0:
            conc += 1
        elif s < 0:
            disc += 1
n = len(rows) * (len(rows) - 1) // 2
print(f"\nKendall tau-a over {len(rows)} plans: {(conc - disc) / n:.3f} ({conc} pairs agree, {disc} disagree, {n - conc - disc} tied)")
'
