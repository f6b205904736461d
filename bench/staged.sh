#!/usr/bin/env bash
# Graph mode against eager mode on the digits MLP training step (issue 6), in one process
# and alternating epochs (bench/staged_step.ms), repeated RUNS times. Prints the staging
# time of each run and the median microseconds per step of each mode with their ratio.
#
#   bench/staged.sh              EPOCHS=10 RUNS=3
# Env: CARGO_TARGET_DIR, EPOCHS, RUNS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
EPOCHS="${EPOCHS:-10}"
RUNS="${RUNS:-3}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -q -p interpreter --bin ms
MS="$TARGET_DIR/release/ms"
out=""
for _ in $(seq "$RUNS"); do
    out+=$("$MS" bench/staged_step.ms --epochs "$EPOCHS")$'\n'
done
python3 - "$out" <<'PYEOF'
import statistics as st, sys
staging, eager, staged, acc = [], [], [], set()
for line in sys.argv[1].splitlines():
    w = line.split()
    if line.startswith("staging ms"):
        staging.append(float(w[2]))
    elif line.startswith("us/step"):
        eager.append(float(w[1])); staged.append(float(w[2]))
    elif line.startswith("accuracy"):
        acc.add((w[2], w[4]))
print("| | median | min | max |")
print("|---|---|---|---|")
print(f"| staging (ms) | {st.median(staging):.1f} | {min(staging):.1f} | {max(staging):.1f} |")
print(f"| eager step (µs) | {st.median(eager):.0f} | {min(eager):.0f} | {max(eager):.0f} |")
print(f"| staged step (µs) | {st.median(staged):.0f} | {min(staged):.0f} | {max(staged):.0f} |")
ratios = [s / e for s, e in zip(staged, eager)]
print(f"| staged / eager | {st.median(ratios):.2f} | {min(ratios):.2f} | {max(ratios):.2f} |")
print(f"accuracies (eager, staged): {sorted(acc)}")
PYEOF
