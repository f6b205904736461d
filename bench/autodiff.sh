#!/usr/bin/env bash
# The three autodiff benchmarks of issue 5, each side by side with its peers in one run:
#   1. one SGD step of the 64-128-128-10 MLP on digits (bench/mlp_step.ms) against PyTorch
#      eager and NumPy with a hand-written backward (bench/autodiff_peers.py mlp);
#   2. the gradient call of macro_grad.py at n = 4, 16, 64, 256 (bench/macro_grad.ms)
#      against PyTorch eager autograd and NumPy (bench/autodiff_peers.py grad);
#   3. recording plus backward per op, a chain of 10,000 adds (bench/grad_chain.ms)
#      against PyTorch eager (bench/grad_peers.py).
# Ours runs before and after each peer, so a drift of the shared machine weighs on both
# sides alike. Prints Markdown tables of medians and ratios.
#
#   bench/autodiff.sh            EPOCHS=12 REPS=7
# Env: PYTHON (default $HOME/.venvs/baselines/bin/python), CARGO_TARGET_DIR, EPOCHS, REPS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY="${PYTHON:-$HOME/.venvs/baselines/bin/python}"
EPOCHS="${EPOCHS:-12}"
REPS="${REPS:-7}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cargo build --release -q -p interpreter --bin ms
MS="$TARGET_DIR/release/ms"

mlp_ours() { "$MS" bench/mlp_step.ms --epochs "$EPOCHS" | awk '/^us\/step/ {print $2}' | tr '\n' ' '; }
grad_ours() { "$MS" bench/macro_grad.ms --reps "$REPS" | awk '{print $1, $2}' | tr '\n' ' '; }
chain_ours() { "$MS" bench/grad_chain.ms --reps "$REPS" | tr '\n' ' '; }

mlp_a=$(mlp_ours); mlp_peers=$("$PY" bench/autodiff_peers.py mlp "$EPOCHS"); mlp_b=$(mlp_ours)
grad_a=$(grad_ours); grad_peers=$("$PY" bench/autodiff_peers.py grad "$REPS"); grad_b=$(grad_ours)
chain_a=$(chain_ours); chain_peer=$("$PY" bench/grad_peers.py 10000 "$REPS" | tr '\n' ' '); chain_b=$(chain_ours)

"$PY" - "$mlp_a $mlp_b" "$mlp_peers" "$grad_a" "$grad_b" "$grad_peers" "$chain_a $chain_b" "$chain_peer" <<'PYEOF'
import json, statistics as st, sys
mlp, mlp_peers = [float(x) for x in sys.argv[1].split()], json.loads(sys.argv[2])
def pairs(s):
    xs = s.split()
    return {int(xs[i]): float(xs[i + 1]) for i in range(0, len(xs), 2)}
ga, gb, grad_peers = pairs(sys.argv[3]), pairs(sys.argv[4]), json.loads(sys.argv[5])
chain, chain_peer = [float(x) for x in sys.argv[6].split()], [float(x) for x in sys.argv[7].split()]

m = st.median(mlp)
print("MLP 64-128-128-10, batch 64, one SGD step (µs, median over epochs after the first)")
print()
print("| impl | µs per step | MindScript ÷ peer |")
print("|---|---|---|")
print(f"| MindScript eager (`grad`) | {m:.1f} | 1.00 |")
for name, xs in mlp_peers.items():
    p = st.median(xs)
    print(f"| {name} | {p:.1f} | {m / p:.2f} |")
print()
print("macro_grad: gradient of sum(tanh(W2 @ tanh(W1 @ x))) w.r.t. (W1, W2) (µs per call, best round)")
print()
names = list(grad_peers)
print("| n | MindScript | " + " | ".join(names) + " | " + " | ".join(f"÷ {n}" for n in names) + " |")
print("|---" * (2 + 2 * len(names)) + "|")
for n in sorted(ga):
    ours = min(ga[n], gb.get(n, ga[n]))
    ps = [grad_peers[k][str(n)] for k in names]
    print(f"| {n} | {ours:.1f} | " + " | ".join(f"{p:.1f}" for p in ps) + " | "
          + " | ".join(f"{ours / p:.2f}" for p in ps) + " |")
print()
c, cp = st.median(chain), st.median(chain_peer)
print("Recording plus backward, chain of 10,000 adds of f32[4] (µs per op, median)")
print()
print("| impl | µs per op | MindScript ÷ peer |")
print("|---|---|---|")
print(f"| MindScript eager | {c:.2f} | 1.00 |")
print(f"| PyTorch eager | {cp:.2f} | {c / cp:.2f} |")
PYEOF
