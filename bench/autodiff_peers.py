#!/usr/bin/env python3
"""The peer side of bench/autodiff.sh (issue 5), written after ../shared/baselines.

  mlp EPOCHS     one SGD step of the 64-128-128-10 MLP of macro_mlp_digits.py on the
                 repository's digits (batch 64, lr 0.1, drop-last): PyTorch eager (2 threads)
                 and NumPy with a hand-written backward. Prints a JSON object of
                 µs-per-step lists, one median per epoch after the first.
  grad REPS      the gradient call of macro_grad.py at n = 4, 16, 64, 256: PyTorch eager
                 autograd and NumPy's hand-written backward. Prints a JSON object
                 {impl: {n: best µs per call}}.
"""
import json
import sys
import time

import numpy as np
import torch


def digits():
    table = np.loadtxt("samples/data/digits.csv", delimiter=",", dtype=np.float32)
    x, y = table[:, :64] / 16.0, table[:, 64].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(y))
    n_test = len(y) // 5
    tr = order[n_test:]
    return x[tr], y[tr]


def init_params():
    rng = np.random.default_rng(0)
    ps = []
    for i, o in [(64, 128), (128, 128), (128, 10)]:
        bound = 1.0 / np.sqrt(i)
        ps.append((rng.uniform(-bound, bound, (i, o)).astype(np.float32),
                   rng.uniform(-bound, bound, (o,)).astype(np.float32)))
    return ps


def epochs_of(n, epochs, batch=64):
    steps = n // batch
    return [np.random.default_rng(1000 + e).permutation(n)[:steps * batch].reshape(steps, batch)
            for e in range(epochs)]


def mlp(epochs):
    x, y = digits()
    orders = epochs_of(len(y), epochs)
    out = {}

    import torch.nn.functional as F
    # PyTorch with 2 threads (the baseline's setting) and with 1, which is sometimes faster
    # on a shared VM at these sizes: both are reported, so the comparison can take the best.
    for threads in (2, 1):
        torch.set_num_threads(threads)
        ps = [(torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_())
              for w, b in init_params()]
        flat = [t for p in ps for t in p]
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        opt = torch.optim.SGD(flat, lr=0.1, foreach=True)
        per_epoch = []
        for e, order in enumerate(orders):
            t0 = time.perf_counter()
            for idx in torch.from_numpy(order):
                opt.zero_grad(set_to_none=True)
                h = xt[idx]
                for i, (w, b) in enumerate(ps):
                    h = h @ w + b
                    if i < 2:
                        h = torch.relu(h)
                F.cross_entropy(h, yt[idx]).backward()
                opt.step()
            if e > 0:
                per_epoch.append((time.perf_counter() - t0) / len(order) * 1e6)
        out[f"PyTorch eager ({threads} thread{'s' if threads > 1 else ''})"] = per_epoch
    torch.set_num_threads(2)

    ps = [(w.copy(), b.copy()) for w, b in init_params()]
    per_epoch = []
    for e, order in enumerate(orders):
        t0 = time.perf_counter()
        for idx in order:
            xb, yb = x[idx], y[idx]
            acts, h = [xb], xb
            for li, (w, b) in enumerate(ps):
                h = h @ w + b
                if li < 2:
                    h = np.maximum(h, 0)
                acts.append(h)
            z = acts[-1] - acts[-1].max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1
            g = p / len(yb)
            for li in range(2, -1, -1):
                w, b = ps[li]
                gw, gb = acts[li].T @ g, g.sum(0)
                if li > 0:
                    g = (g @ w.T) * (acts[li] > 0)
                w -= 0.1 * gw
                b -= 0.1 * gb
        if e > 0:
            per_epoch.append((time.perf_counter() - t0) / len(order) * 1e6)
    out["NumPy, hand-written backward"] = per_epoch
    return out


def grad(reps):
    torch.set_num_threads(2)
    out = {"PyTorch eager autograd": {}, "NumPy, hand-written backward": {}}
    for n in [4, 16, 64, 256]:
        r = np.random.default_rng(n)
        s = np.float32(1 / np.sqrt(n))
        w1 = r.standard_normal((n, n), dtype=np.float32) * s
        w2 = r.standard_normal((n, n), dtype=np.float32) * s
        x = r.standard_normal((n,), dtype=np.float32)
        k = max(2000 * 256 // (n * n + 256), 20)
        tw1, tw2, tx = (torch.from_numpy(a) for a in (w1, w2, x))
        tw1.requires_grad_(True)
        tw2.requires_grad_(True)

        def torch_call():
            f = torch.tanh(tw2 @ torch.tanh(tw1 @ tx)).sum()
            return torch.autograd.grad(f, (tw1, tw2))

        def numpy_call():
            h1 = np.tanh(w1 @ x)
            h2 = np.tanh(w2 @ h1)
            d2 = 1 - h2 * h2
            dw2 = np.outer(d2, h1)
            d1 = (w2.T @ d2) * (1 - h1 * h1)
            return np.outer(d1, x), dw2

        for name, call in [("PyTorch eager autograd", torch_call),
                           ("NumPy, hand-written backward", numpy_call)]:
            best = float("inf")
            for _ in range(reps):
                t0 = time.perf_counter()
                for _ in range(k):
                    call()
                best = min(best, (time.perf_counter() - t0) / k * 1e6)
            out[name][n] = best
    return out


if __name__ == "__main__":
    what, arg = sys.argv[1], int(sys.argv[2])
    print(json.dumps(mlp(arg) if what == "mlp" else grad(arg)))
