#!/usr/bin/env bash
# Eager overhead side by side (issue 4): 100,000 adds of two f32[4] tensors in MindScript
# (bench/eager_add.ms) and in NumPy, PyTorch eager and JAX eager (bench/eager_peers.py), one
# after the other in one run, plus the time from starting `ms` to its first prompt over a
# pipe (`:quit` as the only input). Prints medians and ratios as Markdown rows.
#
#   bench/eager.sh                 N=100000 REPS=7
# Env: PYTHON (default $HOME/.venvs/baselines/bin/python), CARGO_TARGET_DIR, N, REPS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY="${PYTHON:-$HOME/.venvs/baselines/bin/python}"
N="${N:-100000}"
REPS="${REPS:-7}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -q -p interpreter --bin ms
MS="$TARGET_DIR/release/ms"
# Ours runs before and after the peers, so that a drift of the shared machine during the
# run weighs on both sides alike.
ours=$("$MS" bench/eager_add.ms --n "$N" --reps "$REPS" | tr '\n' ' ')
peers=$("$PY" bench/eager_peers.py "$N" "$REPS")
ours="$ours $("$MS" bench/eager_add.ms --n "$N" --reps "$REPS" | tr '\n' ' ')"
"$PY" - "$MS" "$ours" "$peers" <<'PYEOF'
import json, statistics, subprocess, sys, time
ms, ours, peers = sys.argv[1], [float(x) for x in sys.argv[2].split()], json.loads(sys.argv[3])
starts = []
for _ in range(21):
    t0 = time.perf_counter()
    subprocess.run([ms], input=b":quit\n", stdout=subprocess.DEVNULL, check=True)
    starts.append((time.perf_counter() - t0) * 1e3)
med = statistics.median(ours)
print(f"| impl | µs per add (median of {len(ours)}) | MindScript ÷ peer |")
print("|---|---|---|")
print(f"| MindScript eager (`ms`) | {med:.3f} | 1.00 |")
for name, xs in peers.items():
    m = statistics.median(xs)
    print(f"| {name} | {m:.3f} | {med / m:.2f} |")
print()
print(f"`ms` start to first prompt and exit over a pipe: median {statistics.median(starts):.1f} ms "
      f"(min {min(starts):.1f}) of {len(starts)} runs")
PYEOF
