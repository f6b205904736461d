#!/usr/bin/env bash
# The elementwise chain of issue 7, side by side: MindScript eager and staged (fused)
# from bench/fusion.ms, then NumPy, PyTorch (eager, torch.compile) and JAX (eager, jax.jit)
# from ../shared/baselines/micro_fusion.py, in one run on one machine. Prints a table of
# median milliseconds per call and the ratios the issue asks for.
#
#   bash bench/fusion.sh                     REPS=9
# Env: CARGO_TARGET_DIR, REPS, PYTHON (the baselines venv; the peers are skipped without
# it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
REPS="${REPS:-9}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PYTHON="${PYTHON:-$HOME/.venvs/baselines/bin/python}"
cargo build --release -q -p interpreter --bin ms
ours=$("$TARGET_DIR/release/ms" bench/fusion.ms --reps "$REPS")
peers_json=""
if [ -x "$PYTHON" ]; then
    out=$(mktemp -d)
    (cd ../shared/baselines && BASELINE_RESULTS_DIR="$out" "$PYTHON" micro_fusion.py >&2) || true
    peers_json="$out/micro_fusion.json"
fi
python3 - "$ours" "${peers_json:-}" <<'PYEOF'
import json, statistics as st, sys
ours, peers = sys.argv[1], sys.argv[2]
rows = {"chain": ([], []), "poly": ([], [])}
diff = None
for line in ours.splitlines():
    w = line.split()
    if w and w[0] in rows:
        rows[w[0]][0].append(float(w[1])); rows[w[0]][1].append(float(w[2]))
    elif w and w[0] == "maxdiff":
        diff = w[1]
med = {k: (st.median(e), st.median(s)) for k, (e, s) in rows.items()}
peer = {}
if peers:
    try:
        data = json.load(open(peers))
        for r in data.get("results", []):
            case, impl = r.get("bench"), r.get("impl")
            secs = (r.get("time_s") or {}).get("median")
            if case in ("elementwise_chain", "poly_chain") and impl and secs:
                peer[(case, impl)] = float(secs) * 1000.0
    except Exception as e:  # the table still shows our figures
        print(f"(peer results unreadable: {e})")
for case, key in (("elementwise_chain", "chain"), ("poly_chain", "poly")):
    e, s = med[key]
    print(f"\n{case} (10M f32), median ms per call")
    print("| impl | ms | staged is × faster |")
    print("|---|---|---|")
    print(f"| MindScript staged (fused) | {s:.2f} | 1.00 |")
    print(f"| MindScript eager | {e:.2f} | {e / s:.2f} |")
    for (c, impl), ms in sorted(peer.items()):
        if c == case:
            print(f"| {impl} | {ms:.2f} | {ms / s:.2f} |")
print(f"\nlargest |eager - staged| over both chains: {diff}")
PYEOF
