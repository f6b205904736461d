#!/usr/bin/env bash
# f32 matmul, ours against NumPy (OpenBLAS), alternating round after round so that both see
# the same load on a shared machine; prints every round's GFLOP/s, then the medians and
# their ratio.
#
#   bench/matmul_ab.sh [rounds] [sizes...]     default: 5 rounds of 256 512 1024 2048
# Env: PYTHON (default $HOME/.venvs/baselines/bin/python), BENCH_THREADS (default 2),
#      CARGO_TARGET_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY="${PYTHON:-$HOME/.venvs/baselines/bin/python}"
ROUNDS="${1:-5}"
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(256 512 1024 2048)
THREADS="${BENCH_THREADS:-2}"
export RAYON_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
# OpenBLAS picks its kernels for the CPU it runs on, as in compare.sh and
# ../shared/baselines/run_all.sh: a host's OPENBLAS_CORETYPE (this machine sets Haswell, which
# halves OpenBLAS's speed on an AVX-512 CPU) or OPENBLAS_L2_SIZE would handicap NumPy.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

cargo build --release -q -p devices --example matmul_gflops
OURS="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/matmul_gflops"
# The same measurement in NumPy: the median of 9 batches of about 2 GFLOP each.
NUMPY='
import sys, time, numpy as np
for n in map(int, sys.argv[1:]):
    a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
    flop = 2.0 * n**3; reps = max(1, min(2000, int(2e9 / flop))); a @ b
    s = []
    for _ in range(9):
        t = time.perf_counter()
        for _ in range(reps): a @ b
        s.append((time.perf_counter() - t) / reps)
    print(n, round(flop / sorted(s)[4] / 1e9, 1))
'
for r in $(seq "$ROUNDS"); do
  echo "# round $r, load $(cut -d' ' -f1 /proc/loadavg)" >&2
  "$OURS" "${SIZES[@]}" | sed 's/^/ours /'
  "$PY" -c "$NUMPY" "${SIZES[@]}" | sed 's/^/numpy /'
done | "$PY" -c '
import sys, statistics as st
v = {}
for line in sys.stdin:
    who, n, g = line.split(); v.setdefault(int(n), {}).setdefault(who, []).append(float(g))
print("size  ours (rounds)                      numpy (rounds)                     median ours / numpy")
for n in sorted(v):
    o, p = v[n]["ours"], v[n]["numpy"]
    fmt = lambda x: " ".join(f"{g:5.0f}" for g in x)
    print(f"{n:5d} {fmt(o):34s} {fmt(p):34s} {st.median(o):5.0f} / {st.median(p):5.0f} = {st.median(o) / st.median(p):.2f}")
'
