#!/usr/bin/env bash
# Kernel benchmarks of the CPU device side by side with NumPy and PyTorch, joined into the
# generated section of BENCHMARKS.md.
#
#   bench/compare.sh                      full run (about 3 min of Rust + 2 min of peers)
#   QUICK=1 bench/compare.sh              smoke run: short criterion times, few peer samples
#   CASES=matmul,unary bench/compare.sh   only these groups
#                                         (matmul, elementwise, reduce, unary, conv2d)
# Env: PYTHON (baseline venv interpreter, default $HOME/.venvs/baselines/bin/python),
#      CARGO_TARGET_DIR (default <repo>/target), BENCH_OUT (raw results, default
#      $CARGO_TARGET_DIR/bench-compare), BENCH_THREADS (default 2), NO_REPORT=1 (leave
#      BENCHMARKS.md alone), BASELINE_WAIT_BUDGET (s each side may wait for the machine to
#      go quiet per group; default 60, 0 with QUICK=1), BASELINES_DIR (the shared
#      baselines folder whose common.py times the peers).
# Exit status: non-zero if any group failed on either side (e.g. a kernel still missing);
# the report is written anyway, with those cases marked.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY="${PYTHON:-$HOME/.venvs/baselines/bin/python}"
QUICK="${QUICK:-0}"
ALL_CASES="matmul,elementwise,reduce,unary,conv2d"
CASES="${CASES:-$ALL_CASES}"
THREADS="${BENCH_THREADS:-2}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OUT="${BENCH_OUT:-$TARGET_DIR/bench-compare}"

for g in ${CASES//,/ }; do
  case ",$ALL_CASES," in
    *",$g,"*) ;;
    *) echo "compare.sh: unknown group '$g' (known: $ALL_CASES)" >&2; exit 2 ;;
  esac
done
[ -x "$PY" ] || { echo "compare.sh: no python at $PY (set PYTHON=...)" >&2; exit 2; }

# A fresh output folder, so a case that fails this time cannot show last run's figures.
# Only a folder this script made (it holds run_meta.json) or an empty one is cleared.
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/run_meta.json" ]; then
  echo "compare.sh: $OUT is not empty and not a previous run's output; not clearing it" >&2
  exit 2
fi
rm -rf "$OUT"
mkdir -p "$OUT"
export CRITERION_HOME="$OUT/criterion"
# No __pycache__ in the shared baselines folder (common.py is imported from there) or here.
export PYTHONDONTWRITEBYTECODE=1
export BASELINES_DIR="${BASELINES_DIR:-$ROOT/../shared/baselines}"
if [ "$QUICK" = 1 ]; then
  export BASELINE_QUICK=1 BASELINE_WAIT_BUDGET="${BASELINE_WAIT_BUDGET:-0}"
  # Criterion's minimum is 10 samples; shorter warm-up and measurement make it quick.
  CRIT_ARGS=(--noplot --warm-up-time 0.2 --measurement-time 0.5 --sample-size 10)
else
  export BASELINE_QUICK=0 BASELINE_WAIT_BUDGET="${BASELINE_WAIT_BUDGET:-60}"
  CRIT_ARGS=(--noplot)
fi

# Both sides get the same number of threads: rayon (our kernels) and torch take it
# explicitly; OpenBLAS is capped too, because a larger machine would otherwise give NumPy's
# matmul all its cores. NumPy's elementwise and reduction loops are single-threaded.
export RAYON_NUM_THREADS="$THREADS"
PEER_ENV=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$THREADS"
  BENCH_THREADS="$THREADS")

# Record the host's OpenBLAS tuning variables before they are unset for the peers (as
# ../shared/baselines/run_all.sh does), and what this run was.
cat > "$OUT/run_meta.json" <<META
{"started": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "quick": "$QUICK", "cases": "$CASES",
 "threads": "$THREADS", "rayon_num_threads": "$RAYON_NUM_THREADS",
 "outer_OPENBLAS_CORETYPE": "${OPENBLAS_CORETYPE-<unset>}",
 "outer_OPENBLAS_L2_SIZE": "${OPENBLAS_L2_SIZE-<unset>}",
 "command": "QUICK=$QUICK CASES=$CASES bench/compare.sh",
 "git": "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo -dirty)",
 "rustc": "$(rustc --version 2>/dev/null || echo unknown)"}
META

# Build first, so compilation is neither timed nor counted as background load.
cargo bench -p devices --bench kernels --no-run

# Group by group, ours then the peers', so each pair is measured minutes apart at most
# on a machine whose load drifts. A failing side is recorded and the run goes on.
failed=()
for g in ${CASES//,/ }; do
  echo "=== $g: ours ($(date -u +%H:%M:%S))"
  if ! "$PY" bench/timed.py --log "$OUT/load.jsonl" --label "ours/$g" -- \
      cargo bench -p devices --bench kernels -- "${CRIT_ARGS[@]}" "^$g/" \
      2>&1 | tee "$OUT/ours-$g.log"; then
    failed+=("ours/$g")
  fi
  echo "=== $g: peers ($(date -u +%H:%M:%S))"
  if ! "${PEER_ENV[@]}" "$PY" bench/peers.py --cases "$g" --out "$OUT/peers-$g.json" \
      2>&1 | tee "$OUT/peers-$g.log"; then
    failed+=("peers/$g")
  fi
done

if [ "${NO_REPORT:-0}" != 1 ]; then
  "$PY" bench/report.py --out-dir "$OUT" --targets bench/targets.json \
    --update BENCHMARKS.md --failed "${failed[*]:-}"
fi
echo "raw results: $OUT"
if [ ${#failed[@]} -gt 0 ]; then
  echo "compare.sh: failed: ${failed[*]} (see $OUT/*.log)" >&2
  exit 1
fi
