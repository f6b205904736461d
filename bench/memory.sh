#!/usr/bin/env bash
# Peak memory of the digits MLP training step, eager against staged (issue 7): runs
# interpreter/examples/memory_step.rs (bench/memory_step.ms, one warm-up call, then EPOCHS
# epochs of batches of 64) and prints a table of the peak of live host tensor bytes during
# the epochs above what was alive before them, the tensor buffers made per step and the
# microseconds per step, for eager, staged, staged without in-place writes and staged
# without passes. Then `ms --mem-stats` on the whole of bench/staged_step.ms (data, both
# steps, two epochs each), the flag's own report.
#
#   bench/memory.sh              EPOCHS=3
# Env: CARGO_TARGET_DIR, EPOCHS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
EPOCHS="${EPOCHS:-3}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -q -p interpreter --example memory_step --bin ms
"$TARGET_DIR/release/examples/memory_step" "$EPOCHS"
echo
echo "bench/staged_step.ms --epochs 2, whole process (\`ms --mem-stats\`):"
"$TARGET_DIR/release/ms" --mem-stats bench/staged_step.ms --epochs 2 2>&1 >/dev/null | sed 's/^/  /'
