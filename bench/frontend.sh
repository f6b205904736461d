#!/usr/bin/env bash
# Front-end speed (issue 3): criterion medians for parsing and checking a generated
# 10,000-line script and one REPL line, plus cold `ms check` runs of the same script
# (process start, file read, parse, check, exit) timed with hyperfine-style repetition.
#
#   bench/frontend.sh            # release build, 20 cold runs
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -q -p interpreter --bin ms
cargo run --release -q -p ms-tests --example gen_program -- 10000 7 > "$TARGET_DIR/big.ms"
echo "generated $(wc -l < "$TARGET_DIR/big.ms") lines"
python3 - "$TARGET_DIR/release/ms" "$TARGET_DIR/big.ms" <<'PY'
import statistics, subprocess, sys, time
ms, script = sys.argv[1], sys.argv[2]
runs = []
for _ in range(20):
    t = time.perf_counter()
    r = subprocess.run([ms, "check", script], capture_output=True)
    runs.append(time.perf_counter() - t)
    assert r.returncode == 0, r.stderr.decode()
print(f"cold `ms check` of the 10,000-line script: median {statistics.median(runs)*1e3:.1f} ms, "
      f"min {min(runs)*1e3:.1f} ms over {len(runs)} runs")
PY
cargo bench -q -p ms-tests --bench frontend -- --noplot 2>&1 | grep -E "time:|frontend" || true
