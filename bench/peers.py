#!/usr/bin/env python3
"""The peers of devices/benches/kernels.rs: the same cases in NumPy and PyTorch.

Writes one JSON file: {"meta": {...}, "results": {case: {impl: record}}, "errors": [...]},
where `case` is the criterion id of the Rust twin (e.g. "matmul/f32/1024") and a record
holds the per-call median/min/max in seconds plus the background load measured around it.

Honesty rules (the same as the Rust side):
  * same sizes and dtypes, and the same input values: `uniform()` below is the counter-based
    SplitMix64 generator of kernels.rs, bit for bit, so transcendental ops see the same
    arguments;
  * two threads: torch.set_num_threads(2); NumPy's elementwise ops are single-threaded
    anyway, and OpenBLAS uses its default (the machine's core count, 2 here);
  * every call allocates and returns its result, as `Device::exec` does, and the result of
    the last call of each inner loop is kept alive by the timing helper.

Timing uses `bench()` of ../shared/baselines/common.py (warm-up, calibrated inner
loop, repeated samples, waiting for the shared machine to go quiet, background-load
accounting), imported from that folder rather than copied.
Usage: peers.py --cases matmul,unary --out peers.json
"""
import argparse
import json
import math
import os
import sys
import time
import traceback

import numpy as np

BASELINES = os.environ.get("BASELINES_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "baselines"))
sys.path.insert(0, BASELINES)
import common as C  # noqa: E402  (the path is only known at run time)

THREADS = int(os.environ.get("BENCH_THREADS", "2"))  # compare.sh passes its own
N_ELEMS = 10_000_000
REDUCE_SHAPE = (10_000, 1_000)
MATMUL_SIZES = (64, 256, 512, 1024, 2048)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def uniform(seed, shape, lo, hi, dtype):
    """kernels.rs's uniform_f32/uniform_f64: SplitMix64 of seed + (i+1)*GOLDEN, top 24
    (f32) or 53 (f64) bits scaled to [0, 1), then lo + (hi - lo) * u in `dtype`.
    NumPy's uint64 array arithmetic wraps, as Rust's wrapping_* does."""
    n = math.prod(shape)
    z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    if dtype == np.float32:
        u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    else:
        u = (z >> np.uint64(11)).astype(np.float64) * np.float64(2.0 ** -53)
    lo, hi = dtype(lo), dtype(hi)
    return (lo + (hi - lo) * u).astype(dtype, copy=False).reshape(shape)


def load_torch():
    """torch, with two threads, or None where it is not installed."""
    try:
        return C.setup_torch(THREADS)
    except ImportError:
        return None


# ---------------------------------------------------------------------------
# Cases: each group yields (case id, impl, thunk).  Inputs are built once per group.

def matmul_cases(torch):
    for n in MATMUL_SIZES:
        for dt, name in ((np.float32, "f32"), (np.float64, "f64")):
            a, b = uniform(1, (n, n), -1, 1, dt), uniform(2, (n, n), -1, 1, dt)
            case = f"matmul/{name}/{n}"
            yield case, "numpy", lambda a=a, b=b: a @ b
            if torch is not None:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                yield case, "torch", lambda a=ta, b=tb: a @ b


def elementwise_cases(torch):
    a, b = uniform(3, (N_ELEMS,), -1, 1, np.float32), uniform(4, (N_ELEMS,), -1, 1, np.float32)
    ta, tb = (torch.from_numpy(a), torch.from_numpy(b)) if torch is not None else (None, None)
    for name, f in (("add", np.add), ("mul", np.multiply)):
        yield f"elementwise/{name}", "numpy", lambda f=f: f(a, b)
        if torch is not None:
            tf = {"add": torch.add, "mul": torch.mul}[name]
            yield f"elementwise/{name}", "torch", lambda tf=tf: tf(ta, tb)


def reduce_cases(torch):
    x = uniform(5, REDUCE_SHAPE, -1, 1, np.float32)
    # NumPy sums f32 pairwise in f32, like a careful kernel would; the result is a 0-d
    # array or a row vector, never a Python float, so nothing is converted per call.
    yield "reduce/sum_all", "numpy", lambda: np.sum(x)
    yield "reduce/sum_last", "numpy", lambda: np.sum(x, axis=-1)
    yield "reduce/max_all", "numpy", lambda: np.max(x)
    if torch is not None:
        tx = torch.from_numpy(x)
        yield "reduce/sum_all", "torch", lambda: torch.sum(tx)
        yield "reduce/sum_last", "torch", lambda: torch.sum(tx, dim=-1)
        yield "reduce/max_all", "torch", lambda: torch.max(tx)


def unary_cases(torch):
    x = uniform(6, (N_ELEMS,), -4, 4, np.float32)
    pos = uniform(6, (N_ELEMS,), 0.01, 10, np.float32)
    one, half = np.float32(1), np.float32(0.5)
    inv_sqrt2 = np.float32(1 / math.sqrt(2))
    try:
        from scipy.special import erf  # has an f32 loop, so the composite stays in f32
    except ImportError:
        erf = None
    numpy_ops = {
        "exp": lambda: np.exp(x),
        "log": lambda: np.log(pos),
        "tanh": lambda: np.tanh(x),
        # NumPy has no sigmoid: the usual composite.
        "sigmoid": lambda: one / (one + np.exp(-x)),
        # Exact GELU as x/2 * (1 + erf(x/sqrt 2)); torch's fused gelu is the real peer.
        "gelu": (lambda: half * x * (one + erf(x * inv_sqrt2))) if erf is not None else None,
        "sin": lambda: np.sin(x),
        "cos": lambda: np.cos(x),
    }
    for name, fn in numpy_ops.items():
        if fn is not None:
            yield f"unary/{name}", "numpy", fn
    if torch is not None:
        tx, tpos = torch.from_numpy(x), torch.from_numpy(pos)
        F = torch.nn.functional
        torch_ops = {
            "exp": lambda: torch.exp(tx),
            "log": lambda: torch.log(tpos),
            "tanh": lambda: torch.tanh(tx),
            "sigmoid": lambda: torch.sigmoid(tx),
            "gelu": lambda: F.gelu(tx),  # approximate="none": the exact (erf) form
            "sin": lambda: torch.sin(tx),
            "cos": lambda: torch.cos(tx),
        }
        for name, fn in torch_ops.items():
            yield f"unary/{name}", "torch", fn


def conv2d_cases(torch):
    # The shapes of micro_conv.py; NumPy has no convolution worth comparing against.
    if torch is None:
        return
    n, ci, h, w, co, k = 32, 3, 32, 32, 16, 3
    x = torch.from_numpy(uniform(7, (n, ci, h, w), -1, 1, np.float32))
    wt = torch.from_numpy(uniform(8, (co, ci, k, k), -0.5, 0.5, np.float32))
    dy = torch.from_numpy(uniform(9, (n, co, h, w), -1, 1, np.float32))
    F = torch.nn.functional

    def fwd():
        with torch.no_grad():
            return F.conv2d(x, wt, padding=1)

    xg, wg = x.clone().requires_grad_(True), wt.clone().requires_grad_(True)

    def fwd_bwd():
        y = F.conv2d(xg, wg, padding=1)
        dx, dw = torch.autograd.grad(y, (xg, wg), dy)
        return y, dx, dw

    yield "conv2d/fwd", "torch", fwd
    yield "conv2d/fwd_bwd", "torch", fwd_bwd


GROUPS = {
    "matmul": matmul_cases,
    "elementwise": elementwise_cases,
    "reduce": reduce_cases,
    "unary": unary_cases,
    "conv2d": conv2d_cases,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(GROUPS), help="comma-separated groups")
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args()
    groups = [g for g in args.cases.split(",") if g]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        sys.exit(f"peers.py: unknown group(s) {unknown}; known: {list(GROUPS)}")

    torch = load_torch()
    results, errors = {}, []
    for g in groups:
        try:
            cases = list(GROUPS[g](torch))
        except Exception as e:  # keep the other groups' figures
            errors.append({"group": g, "error": repr(e), "traceback": traceback.format_exc(limit=3)})
            print(f"[peers] ERROR building {g}: {e!r}", flush=True)
            continue
        for case, impl, fn in cases:
            try:
                samples, inner = C.bench(fn, repeats=7)
            except Exception as e:
                errors.append({"case": case, "impl": impl, "error": repr(e)})
                print(f"[peers] ERROR {case} {impl}: {e!r}", flush=True)
                continue
            st = C.stats(samples)
            rec = {"median_s": st["median"], "min_s": st["min"], "max_s": st["max"],
                   "samples": st["n"], "inner": inner, "load": dict(C.LAST_LOAD)}
            results.setdefault(case, {})[impl] = rec
            print(f"[peers] {case:<20} {impl:<6} median {C.fmt_t(st['median'])} "
                  f"[{C.fmt_t(st['min'])}..{C.fmt_t(st['max'])}] x{inner} "
                  f"bg={C.LAST_LOAD.get('bg_cores')}", flush=True)
        del cases  # free this group's inputs before the next one

    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "groups": groups,
        "quick": C.QUICK,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "versions": C.versions(),
        "blas": C.blas_info(),
        "machine": C.machine(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
        "notes": [
            "sigmoid (numpy): 1/(1+np.exp(-x)) in f32",
            "gelu (numpy): 0.5*x*(1+scipy.special.erf(x/sqrt2)) in f32; "
            "the torch peer is torch.nn.functional.gelu (exact, erf form)",
            "conv2d: torch only (NumPy has no native convolution)",
        ],
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results, "errors": errors}, f, indent=1, default=str)
    print(f"[peers] wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
